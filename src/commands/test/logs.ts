import { Args, Flags } from '@oclif/core';
import { BaseCommand } from '../../cli/base-command';
import { appFlag } from '../../cli/common-flags';
import { formatLogLine, streamLogs } from '../../run/schedule-service';
import { Interrupts } from '../../run/interrupts';

export default class TestLogs extends BaseCommand {
  static override summary = "A run's log lines, streaming while it runs with --follow";
  static override examples = ['<%= config.bin %> test logs 20261122-101500-123-10-a1b2c3', '<%= config.bin %> test logs 20261122-101500-123-10-a1b2c3 --follow'];
  static override args = { id: Args.string({ description: 'run id', required: true }) };
  static override flags = { app: appFlag, follow: Flags.boolean({ char: 'f', description: 'keep printing new lines until the run ends', default: false }) };

  async run(): Promise<void> {
    const { args, flags } = await this.parse(TestLogs);
    const interrupts = new Interrupts(this.io);
    try {
      await streamLogs({
        io: this.io,
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
