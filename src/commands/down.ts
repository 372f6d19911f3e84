import { Flags } from '@oclif/core';
import { BaseCommand } from '../cli/base-command';
import { appFlag } from '../cli/common-flags';
import { downApp } from '../run/sut-service';

export default class Down extends BaseCommand {
  static override summary = 'Tear the system under test down';
  static override description = 'Removes the SUT recorded by `topas up` and anything earlier runs of the same app left behind; --all also sweeps everything any crashed topas run left (containers, networks, processes, embedded PostgreSQL).';
  static override examples = ['<%= config.bin %> down', '<%= config.bin %> down --all'];
  static override flags = { app: appFlag, all: Flags.boolean({ description: 'sweep everything topas left behind, for every app', default: false }) };

  async run(): Promise<void> {
    const { flags } = await this.parse(Down);
    const result = await downApp({ io: this.io, app: flags.app, all: flags.all });
    if (flags.json) return this.outJson(result);
    if (result.tornDown) this.out(`torn down: ${result.tornDown}`);
    this.out(result.removed.length ? `swept ${result.removed.length} leftover(s):\n${result.removed.map((r) => `  ${r}`).join('\n')}` : result.tornDown ? '' : 'nothing was running');
  }
}
