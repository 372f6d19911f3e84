import { Args, Flags } from '@oclif/core';
import { BaseCommand } from '../../cli/base-command';
import { appFlag, clusterFlags, withClusterFlags } from '../../cli/common-flags';
import { formatLogLine } from '../../run/schedule-service';
import { followRunLogs } from '../../run/backend-runs';
import { Interrupts } from '../../run/interrupts';

export default class TestLogs extends BaseCommand {
  static override summary = "A run's log lines, streaming while it runs with --follow";
  static override description = "From this folder's run records; with --backend kubernetes from the run's TestRun (watched with --follow).";
  static override examples = [
    '<%= config.bin %> test logs 20261122-101500-123-10-a1b2c3',
    '<%= config.bin %> test logs 20261122-101500-123-10-a1b2c3 --follow',
    '<%= config.bin %> test logs 20261122-101500-123-10-a1b2c3 --follow --backend kubernetes',
  ];
  static override args = { id: Args.string({ description: 'run id', required: true }) };
  static override flags = {
    app: appFlag,
    follow: Flags.boolean({ char: 'f', description: 'keep printing new lines until the run ends', default: false }),
    backend: Flags.string({ description: "read the run a backend keeps by itself (kubernetes: its TestRun) instead of this folder's record", helpValue: 'NAME' }),
    ...clusterFlags,
  };

  async run(): Promise<void> {
    const { args, flags } = await this.parse(TestLogs);
    const interrupts = new Interrupts(this.io);
    try {
      await followRunLogs({
        io: withClusterFlags(this.io, flags),
        backend: flags.backend,
        id: args.id,
        app: flags.app,
        follow: flags.follow,
        signal: interrupts.signal,
        write: (line) => this.out(flags.json ? JSON.stringify(line) : formatLogLine(line)),
      });
    } finally {
      interrupts.dispose();
    }
  }
}
