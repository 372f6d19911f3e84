import { Args, Flags } from '@oclif/core';
import { BaseCommand } from '../cli/base-command';
import { appFlag } from '../cli/common-flags';
import { reportRun } from '../run/report-service';
import { reporterNames } from '../reporters/index';

export default class Report extends BaseCommand {
  static override summary = 'Render a past run or load run (table, json, junit, html, github)';
  static override examples = ['<%= config.bin %> report 20261122-101500-123-10-a1b2c3', '<%= config.bin %> report 20261122-101500-123-10-a1b2c3 --format junit -o report.xml', '<%= config.bin %> report 20261122-101500-123-10-a1b2c3 --format html -o report.html'];
  static override args = { id: Args.string({ description: 'run id (see `topas test status`)', required: true }) };
  static override flags = {
    app: appFlag,
    format: Flags.string({ description: 'reporter', default: 'table', options: reporterNames() }),
    output: Flags.string({ char: 'o', description: 'write to this file instead of stdout', helpValue: 'FILE' }),
  };

  async run(): Promise<void> {
    const { args, flags } = await this.parse(Report);
    await reportRun({ io: this.io, id: args.id, app: flags.app, format: flags.json ? 'json' : flags.format, file: flags.output });
  }
}
