import { Flags } from '@oclif/core';
import { BaseCommand } from '../cli/base-command';
import { appFlag } from '../cli/common-flags';

export default class Dashboard extends BaseCommand {
  static override summary = 'Local web UI: run history, pass rates and duration trends, run reports, compare, the queue, live logs, /metrics';
  static override description =
    'Serves the runs stored in .topas/runs (next to the app spec, or here) on 127.0.0.1 until Ctrl-C. The printed URL holds a random token: every request and WebSocket needs it (the first page view turns it into a cookie; /metrics takes ?token= or an Authorization: Bearer header). Exits 0 when stopped.';
  static override examples = ['<%= config.bin %> dashboard', '<%= config.bin %> dashboard --port 8484 --app topas.yaml'];
  static override flags = {
    app: appFlag,
    port: Flags.integer({ description: 'port on 127.0.0.1 (default: any free port)', min: 1, max: 65535 }),
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(Dashboard);
    const { startDashboard } = await import('../dashboard/server');
    // one Io for the whole life of the server (the CLI's current Io may be swapped meanwhile in tests)
    const io = this.io;
    // it starts nothing that needs tearing down: the first signal stops it
    let stop!: (sig: string) => void;
    const stopped = new Promise<string>((resolve) => (stop = resolve));
    const unsubscribe = io.onSignal((sig) => stop(sig));
    try {
      const dashboard = await startDashboard({ io, app: flags.app, port: flags.port });
      io.stdout.write(flags.json ? `${JSON.stringify({ url: dashboard.url, port: dashboard.port, dir: dashboard.dir })}\n` : `topas dashboard on ${dashboard.url}\n  runs in ${dashboard.dir}; Ctrl-C to stop\n`);
      const sig = await stopped;
      await dashboard.close();
      io.stderr.write(`${sig}: dashboard stopped\n`);
    } finally {
      unsubscribe();
    }
  }
}
