import { BaseCommand } from '../cli/base-command';
import { appFlag, clusterFlags, withClusterFlags } from '../cli/common-flags';
import { psApp, servicesTable } from '../run/sut-service';
import { maskSecrets } from '../spec/secrets';

export default class Ps extends BaseCommand {
  static override summary = 'Show services, replicas, readiness and endpoints of the running SUT';
  static override examples = ['<%= config.bin %> ps', '<%= config.bin %> ps --json'];
  static override flags = { app: appFlag, ...clusterFlags };

  async run(): Promise<void> {
    const { flags } = await this.parse(Ps);
    const result = await psApp({ io: withClusterFlags(this.io, flags), app: flags.app });
    if (flags.json) return this.outJson(result);
    if (!result.backend) return this.out(`${result.app} is not up (\`topas up\` starts it)`);
    this.out(`${result.app} on ${result.backend} (run ${result.runId})`);
    this.out(servicesTable(result.services, maskSecrets));
  }
}
