import { BaseCommand } from '../cli/base-command';
import { appFlag, backendFlag, clusterFlags, envFileFlag, envFlag, parseEnvFlags, withClusterFlags } from '../cli/common-flags';
import { servicesTable, upApp } from '../run/sut-service';
import { maskSecrets } from '../spec/secrets';

export default class Up extends BaseCommand {
  static override summary = 'Stand the system under test up and leave it running';
  static override description = 'Starts every service and database of the app spec (in parallel where dependencies allow), waits until they are ready, prints their endpoints and records the SUT in .topas/state.json so later `topas run`, `ps` and `down` reuse it.';
  static override examples = ['<%= config.bin %> up', '<%= config.bin %> up --app fixtures/quickstart/topas.yaml --backend local', '<%= config.bin %> up --backend docker --json'];
  static override flags = { app: appFlag, backend: backendFlag, env: envFlag, 'env-file': envFileFlag, ...clusterFlags };

  async run(): Promise<void> {
    const { flags } = await this.parse(Up);
    const result = await upApp({ io: withClusterFlags(this.io, flags), app: flags.app, backend: flags.backend, env: parseEnvFlags(flags.env, flags['env-file'], this.io.cwd) });
    if (flags.json) return this.outJson(result);
    this.out(`${result.alreadyUp ? 'already up' : 'up'}: ${result.app} on ${result.backend} (run ${result.runId})`);
    this.out(servicesTable(result.services, maskSecrets));
  }
}
