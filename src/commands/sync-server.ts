import { Flags } from '@oclif/core';
import { BaseCommand } from '../cli/base-command';
import { SYNC_DEFAULT_PORT } from '../sync/sync-protocol';

/**
 * The sync service of playbooks spread over several runners (runner pods of
 * `topas run --backend kubernetes --workers N`, or `topas run --sync-url ...
 * --shard I/N` processes): their instances meet at its barriers, signals and
 * topics. Hidden: topas starts it (in a cluster, as a small Deployment of the
 * runner image); a user rarely does.
 */
export default class SyncServer extends BaseCommand {
  static override hidden = true;
  static override summary = "Serve playbooks' sync groups (barriers, signals, topics) to runners over a WebSocket";
  static override description = 'Listens until SIGINT/SIGTERM. With TOPAS_SYNC_TOKEN set, every connection must present it. GET /healthz answers 200.';
  static override examples = ['<%= config.bin %> sync-server --port 7070 --host 0.0.0.0'];
  static override flags = {
    port: Flags.integer({ description: `port (0: any free port)`, default: SYNC_DEFAULT_PORT, min: 0, max: 65535 }),
    host: Flags.string({ description: 'address to listen on', default: '127.0.0.1' }),
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(SyncServer);
    const { startSyncServer } = await import('../sync/sync-server');
    const io = this.io;
    let stop!: (sig: string) => void;
    const stopped = new Promise<string>((resolve) => (stop = resolve));
    const unsubscribe = io.onSignal((sig) => stop(sig));
    try {
      const server = await startSyncServer({ port: flags.port, host: flags.host, token: io.env.TOPAS_SYNC_TOKEN || undefined, log: (line) => io.stderr.write(`topas sync: ${line}\n`) });
      io.stdout.write(flags.json ? `${JSON.stringify({ url: server.url, port: server.port })}\n` : `topas sync server on ${server.url}\n`);
      const sig = await stopped;
      await server.close();
      io.stderr.write(`${sig}: sync server stopped\n`);
    } finally {
      unsubscribe();
    }
  }
}
