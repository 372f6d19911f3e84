import { Flags } from '@oclif/core';
import { BaseCommand } from '../../cli/base-command';
import { withClusterFlags } from '../../cli/common-flags';
import Run from '../run';
import { scheduleCron, scheduleRun } from '../../run/schedule-service';
import { checkRunInput } from '../../run/run-service';

export default class TestSchedule extends BaseCommand {
  static override summary = 'Queue a run in the background and print its id at once';
  static override description = 'Takes the same arguments as `topas run`. The run starts detached and waits its turn: two schedules against the same app run one after the other. Follow it with `topas test logs <id> --follow` and `topas test status <id>`.';
  static override strict = false;
  static override args = Run.args;
  static override flags = {
    ...Run.flags,
    cron: Flags.string({ description: "run on this schedule (cron syntax) where the backend can keep it: on kubernetes a CronJob that stands the app up for each run", helpValue: 'EXPR' }),
  };
  static override examples = [
    '<%= config.bin %> test schedule tests/smoke.lua',
    '<%= config.bin %> test schedule tests/ --parallel 4 --json',
    "<%= config.bin %> test schedule tests/ --backend kubernetes --cron '*/15 * * * *'",
  ];

  async run(): Promise<void> {
    const { argv, flags } = await this.parse(TestSchedule);
    if (flags.cron !== undefined) {
      const options = Run.options(argv as string[], { ...flags, json: false }, withClusterFlags(this.io, flags));
      const made = await scheduleCron(options, flags.cron!);
      if (flags.json) return this.outJson(made);
      this.out(`${made.id}\n${made.description}`);
      return;
    }
    // everything is input: refuse it now (exit 2) rather than in the detached run's record
    await checkRunInput(Run.options(argv as string[], { ...flags, json: false }, this.io));
    const runArgv = this.argv.filter((a) => a !== '--json');
    const { runId, dir } = scheduleRun({ io: this.io, runArgv, app: flags.app });
    if (flags.json) return this.outJson({ runId, dir });
    this.out(runId);
  }
}
