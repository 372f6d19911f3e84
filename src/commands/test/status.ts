import { Args, Flags } from '@oclif/core';
import Table from 'cli-table3';
import { BaseCommand } from '../../cli/base-command';
import { appFlag } from '../../cli/common-flags';
import { runStatus } from '../../run/schedule-service';
import { formatDurationMs } from '../../util/duration';

export default class TestStatus extends BaseCommand {
  static override summary = 'State (Pending, Running, Passed, Partial, Failed, Error), result and duration of runs';
  static override examples = ['<%= config.bin %> test status', '<%= config.bin %> test status 20261122-101500-123-10-a1b2c3 --json'];
  static override args = { id: Args.string({ description: 'run id (default: the recent runs)' }) };
  static override flags = { app: appFlag, limit: Flags.integer({ description: 'how many recent runs', default: 20, min: 1 }) };

  async run(): Promise<void> {
    const { args, flags } = await this.parse(TestStatus);
    const runs = runStatus({ io: this.io, id: args.id, app: flags.app, limit: flags.limit });
    if (flags.json) return this.outJson(args.id ? runs[0] : runs);
    if (runs.length === 0) return this.out('no runs yet');
    const table = new Table({ head: ['ID', 'STATE', 'DURATION', 'RESULT'], style: { head: [], border: [] } });
    for (const r of runs) table.push([r.runId, r.state, r.durationMs ? formatDurationMs(r.durationMs) : '', r.result]);
    this.out(table.toString());
  }
}
