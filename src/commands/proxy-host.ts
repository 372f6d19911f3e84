import { Flags } from '@oclif/core';
import { BaseCommand } from '../cli/base-command';
import { TopasError } from '../errors';
import { PROXY_HOST_TOKEN_ENV, runProxyHost } from '../shape/proxy-host';

/** Internal: the detached host of a kept SUT's dependents' shaping proxies (started by `topas up` / --keep). */
export default class ProxyHost extends BaseCommand {
  static override hidden = true;
  static override summary = 'Internal: host the shaping proxies of a SUT kept running (started by topas itself)';
  static override flags = {
    watch: Flags.string({ required: true, description: "the SUT's work directory; the host exits when it is gone" }),
    ready: Flags.string({ required: true, description: 'file to write {pid, controlPort} to once listening' }),
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(ProxyHost);
    const token = this.io.env[PROXY_HOST_TOKEN_ENV];
    if (!token) throw new TopasError('INVALID_FLAGS', `${PROXY_HOST_TOKEN_ENV} is not set`);
    await runProxyHost({ watchDir: flags.watch, readyFile: flags.ready, token });
    // the control API and proxies keep the process alive until it is told to exit
    await new Promise(() => undefined);
  }
}
