import { Args, loadHelpClass } from '@oclif/core';
import { BaseCommand } from '../cli/base-command';

/** `topas help [command]`: the same text as `topas <command> --help` (oclif's help class renders both). */
export default class Help extends BaseCommand {
  static override summary = 'Show help for topas or one of its commands';
  static override description = 'The same text as `topas <command> --help`. Topics work too: `topas help test schedule`.';
  static override strict = false;
  static override args = { command: Args.string({ description: 'a command, e.g. run or test schedule' }) };
  static override examples = ['<%= config.bin %> help', '<%= config.bin %> help run', '<%= config.bin %> help test schedule'];

  async run(): Promise<void> {
    const { argv } = await this.parse(Help);
    const HelpClass = await loadHelpClass(this.config);
    await new HelpClass(this.config, this.config.pjson.oclif.helpOptions ?? {}).showHelp(argv as string[]);
  }
}
