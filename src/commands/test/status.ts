import { Args, Flags } from '@oclif/core';
import Table from 'cli-table3';
import { BaseCommand } from '../../cli/base-command';
import { appFlag, clusterFlags, withClusterFlags } from '../../cli/common-flags';
import { listRunStatus } from '../../run/backend-runs';
import { formatDurationMs } from '../../util/duration';

export default class TestStatus extends BaseCommand {
  static override summary = 'State (Pending, Running, Passed, Partial, Failed, Error), result and duration of runs';
  static override description = "This folder's run records; with --backend kubernetes the TestRuns of the cluster's namespace (runs from any host, and those of `test schedule --cron`); there --app shows only the runs of that spec's app.";
  static override examples = [
    '<%= config.bin %> test status',
    '<%= config.bin %> test status 20261122-101500-123-10-a1b2c3 --json',
    '<%= config.bin %> test status --backend kubernetes --namespace e2e',
    '<%= config.bin %> test status --backend kubernetes --app topas.yaml',
  ];
  static override args = { id: Args.string({ description: 'run id (default: the recent runs)' }) };
  static override flags = {
    app: appFlag,
    limit: Flags.integer({ description: 'how many recent runs', default: 20, min: 1 }),
    backend: Flags.string({ description: "read the runs a backend keeps by itself (kubernetes: the namespace's TestRuns) instead of this folder's records", helpValue: 'NAME' }),
    ...clusterFlags,
  };

  async run(): Promise<void> {
    const { args, flags } = await this.parse(TestStatus);
    const runs = await listRunStatus({ io: withClusterFlags(this.io, flags), backend: flags.backend, id: args.id, app: flags.app, limit: flags.limit });
    if (flags.json) return this.outJson(args.id ? runs[0] : runs);
    if (runs.length === 0) return this.out('no runs yet');
    const withApp = flags.backend !== undefined;
    const table = new Table({ head: ['ID', ...(withApp ? ['APP'] : []), 'STATE', 'DURATION', 'RESULT'], style: { head: [], border: [] } });
    for (const r of runs) table.push([r.runId, ...(withApp ? [r.app ?? ''] : []), r.state, r.durationMs ? formatDurationMs(r.durationMs) : '', r.result]);
    this.out(table.toString());
  }
}
