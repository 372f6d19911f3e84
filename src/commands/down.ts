import { Flags } from '@oclif/core';
import { BaseCommand } from '../cli/base-command';
import { appFlag, backendFlag, clusterFlags, withClusterFlags } from '../cli/common-flags';
import { downApp } from '../run/sut-service';

export default class Down extends BaseCommand {
  static override summary = 'Tear the system under test down';
  static override description = [
    'Without --all: removes the SUT `topas up` (or `run --keep`) left running for the app in this folder (or --app): every kept SUT recorded with this app name and this spec file, and what runs of an app with this name left behind when their topas process died.',
    '',
    "With --all, also what any run left behind when its topas process died (killed, crashed: its pid is gone, or was reused by another process), whatever its app: service processes, embedded PostgreSQL, shaping proxy hosts, work folders, containers and networks.",
    '',
    "Never removed: a run whose topas process still runs (another terminal, a test suite beside you), and a SUT kept by `topas up` for another app (another spec file, even with the same name): run `topas down` in its folder. Local runs are found in $TMPDIR/topas-local, so --all sees the runs of processes with the same TMPDIR; containers an older topas made (no topas.spec label) are left to `topas down` in their folder.",
  ].join('\n');
  static override examples = ['<%= config.bin %> down', '<%= config.bin %> down --all'];
  static override flags = {
    app: appFlag,
    backend: Flags.string({ description: 'sweep only this backend (local, docker or a plugin backend such as kubernetes); default: the one the recorded SUT used, and with --all every backend', helpValue: backendFlag.helpValue }),
    all: Flags.boolean({ description: 'also remove what runs of any app left behind when their topas process died (never a live run, never another app’s kept SUT)', default: false }),
    ...clusterFlags,
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(Down);
    const result = await downApp({ io: withClusterFlags(this.io, flags), app: flags.app, all: flags.all, backend: flags.backend });
    if (flags.json) return this.outJson(result);
    if (result.tornDown) this.out(`torn down: ${result.tornDown}`);
    this.out(result.removed.length ? `swept ${result.removed.length} leftover(s):\n${result.removed.map((r) => `  ${r}`).join('\n')}` : result.tornDown ? '' : 'nothing was running');
  }
}
