import { randomBytes } from 'node:crypto';
import * as http from 'node:http';
import type { Duplex } from 'node:stream';
import { TopasError } from '../errors';
import type { Io } from '../io';
import { compareRuns } from '../run/compare-service';
import { reportRun } from '../run/report-service';
import { recordDirFor } from '../run/schedule-service';
import { checkRequest, sessionCookie, newToken } from './auth';
import { DashboardMetrics } from './metrics';
import { comparePickPage, historyPage, logsPage, messagePage, queuePage } from './pages';
import { RunIndex, paginate, queueOf, trends, type RunFilter } from './run-index';
import { LiveStreams } from './ws';

/**
 * `topas dashboard`: an HTTP server on 127.0.0.1 that reads the stored runs
 * (`.topas/runs/`) and the queue of scheduled runs, and nothing else: it
 * starts no run and writes no record. Every request and WebSocket upgrade
 * must carry the token of the printed URL (src/dashboard/auth.ts).
 */

export const HOST = '127.0.0.1';
const PER_PAGE = 50;
const MAX_PER_PAGE = 500;

export interface DashboardOptions {
  io: Io;
  app?: string;
  /** 0 or absent: any free port */
  port?: number;
  /** a fixed token (tests); default: 32 random bytes */
  token?: string;
}

export interface Dashboard {
  port: number;
  token: string;
  /** the URL to open, with the token */
  url: string;
  dir: string;
  index: RunIndex;
  close(): Promise<void>;
}

type Reply = { status: number; type: string; body: string; headers?: Record<string, string> };

const HTML = 'text/html; charset=utf-8';
const REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

function filterFrom(q: URLSearchParams): RunFilter {
  const kind = q.get('kind');
  const day = (v: string | null) => (v && /^\d{4}-\d{2}-\d{2}$/.test(v) ? v : undefined);
  return {
    state: q.get('state') || undefined,
    name: q.get('name') || undefined,
    kind: kind === 'run' || kind === 'load' ? kind : undefined,
    from: day(q.get('from')),
    to: day(q.get('to')),
  };
}

/** `10%` or `0.1` (as `topas compare --max-regression`). */
function parseMaxRegression(v: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(%)?\s*$/.exec(v);
  return m ? (m[2] ? Number(m[1]) / 100 : Number(m[1])) : undefined;
}

/** An Io whose stdout is a string: the report and compare services render exactly as their commands print. */
function captureIo(io: Io): { io: Io; text: () => string } {
  let out = '';
  return {
    io: { stdout: { write: (c: string) => ((out += c), true) }, stderr: { write: () => true }, env: io.env, cwd: io.cwd, now: () => io.now(), onSignal: () => () => undefined },
    text: () => out,
  };
}

export async function startDashboard(opts: DashboardOptions): Promise<Dashboard> {
  const dir = recordDirFor(opts.io, opts.app);
  const index = new RunIndex(dir);
  // every record is read once now, before the URL is printed: the first page is as quick as the next
  index.rows();
  const metrics = new DashboardMetrics(index);
  const live = new LiveStreams(index, metrics);
  const token = opts.token ?? newToken();
  let port = opts.port ?? 0;

  async function route(url: URL): Promise<{ name: string; reply: Reply; nonce?: string }> {
    const nonce = randomBytes(16).toString('base64');
    const page = (name: string, body: string, status = 200) => ({ name, nonce, reply: { status, type: HTML, body } });
    const p = url.pathname;
    const q = url.searchParams;
    if (p === '/') {
      const filter = filterFrom(q);
      const runs = index.list(filter);
      const perPage = Math.min(MAX_PER_PAGE, Math.max(1, Number(q.get('per')) || PER_PAGE));
      return page('history', historyPage({ nonce, filter, page: paginate(runs, Number(q.get('page')) || 1, perPage), trends: trends(runs), dir }));
    }
    if (p === '/queue') return page('queue', queuePage({ nonce, queue: queueOf(index.list()) }));
    if (p === '/api/runs') {
      const runs = index.list(filterFrom(q));
      const perPage = Math.min(MAX_PER_PAGE, Math.max(1, Number(q.get('per')) || PER_PAGE));
      return { name: 'api-runs', reply: { status: 200, type: 'application/json', body: JSON.stringify(paginate(runs, Number(q.get('page')) || 1, perPage)) } };
    }
    if (p === '/api/queue') return { name: 'api-queue', reply: { status: 200, type: 'application/json', body: JSON.stringify(queueOf(index.list())) } };
    if (p === '/metrics') return { name: 'metrics', reply: { status: 200, type: metrics.registry.contentType, body: await metrics.registry.metrics() } };
    const logs = /^\/runs\/([^/]+)\/logs$/.exec(p);
    if (logs) {
      const run = index.get(decodeURIComponent(logs[1]));
      if (!run) return page('logs', messagePage({ nonce, status: 404, title: 'No such run', message: `no run "${decodeURIComponent(logs[1])}" in ${dir}` }), 404);
      return page('logs', logsPage({ nonce, run }));
    }
    const run = /^\/runs\/([^/]+)$/.exec(p);
    if (run) {
      const id = decodeURIComponent(run[1]);
      if (!index.get(id)) return page('run', messagePage({ nonce, status: 404, title: 'No such run', message: `no run "${id}" in ${dir}` }), 404);
      // the same bytes as `topas report <id> --format html`
      const cap = captureIo(opts.io);
      await reportRun({ io: cap.io, id, app: opts.app, format: 'html' });
      return { name: 'run', reply: { status: 200, type: HTML, body: cap.text(), headers: { 'content-security-policy': REPORT_CSP } } };
    }
    if (p === '/compare') {
      const a = q.get('a') ?? undefined;
      const b = q.get('b') ?? undefined;
      const max = q.get('max') || '10%';
      const maxRegression = parseMaxRegression(max);
      if (!a || !b || maxRegression === undefined || !index.get(a) || !index.get(b)) {
        const runs = index.list().slice(0, 500);
        // preselected: the newest run against the one before it
        return page('compare', comparePickPage({ nonce, runs, a: a ?? runs[1]?.runId, b: b ?? runs[0]?.runId, maxRegression: max }), a || b ? 400 : 200);
      }
      const cap = captureIo(opts.io);
      await compareRuns({ io: cap.io, a, b, app: opts.app, maxRegression, format: 'html' });
      return { name: 'compare', reply: { status: 200, type: HTML, body: cap.text(), headers: { 'content-security-policy': REPORT_CSP } } };
    }
    return page('not-found', messagePage({ nonce, status: 404, title: 'Not found', message: `nothing at ${p}` }), 404);
  }

  function securityHeaders(nonce: string | undefined): Record<string, string> {
    return {
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
      'x-frame-options': 'DENY',
      'referrer-policy': 'no-referrer',
      'content-security-policy': `default-src 'none'; style-src 'unsafe-inline'; script-src ${nonce ? `'nonce-${nonce}'` : "'none'"}; connect-src ws://${HOST}:${port} ws://localhost:${port}; img-src data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'`,
    };
  }

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const t0 = process.hrtime.bigint();
    const url = new URL(req.url ?? '/', `http://${HOST}:${port}`);
    let name = 'refused';
    let status = 500;
    try {
      const auth = checkRequest(req, url, { token, port });
      if (!auth.ok) {
        metrics.refused.inc();
        status = auth.status;
        res.writeHead(status, { ...securityHeaders(undefined), 'content-type': 'text/plain; charset=utf-8' }).end(`${auth.status === 401 ? 'unauthorized' : 'forbidden'}: ${auth.reason}\n`);
        return;
      }
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        name = 'method';
        status = 405;
        res.writeHead(status, { ...securityHeaders(undefined), allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' }).end('only GET\n');
        return;
      }
      // the printed URL's token becomes a cookie, and leaves the address bar (and history) at once
      if (auth.via === 'query' && !url.pathname.startsWith('/api/') && url.pathname !== '/metrics') {
        url.searchParams.delete('token');
        name = 'login';
        status = 303;
        res.writeHead(status, { ...securityHeaders(undefined), 'set-cookie': sessionCookie(port, token), location: `${url.pathname}${url.search}` }).end();
        return;
      }
      const r = await route(url);
      name = r.name;
      status = r.reply.status;
      res.writeHead(status, { ...securityHeaders(r.nonce), 'content-type': r.reply.type, ...r.reply.headers });
      res.end(req.method === 'HEAD' ? undefined : r.reply.body);
    } catch (err) {
      name = 'error';
      status = err instanceof TopasError && err.code === 'FILE_NOT_FOUND' ? 404 : err instanceof TopasError && err.code === 'INVALID_FLAGS' ? 400 : 500;
      if (!res.headersSent) res.writeHead(status, { ...securityHeaders(undefined), 'content-type': 'text/plain; charset=utf-8' });
      res.end(`${err instanceof TopasError ? err.message : 'internal error'}\n`);
    } finally {
      metrics.requests.inc({ route: name, status: String(status) });
      metrics.requestDuration.observe({ route: name }, Number(process.hrtime.bigint() - t0) / 1e9);
    }
  }

  function upgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    const url = new URL(req.url ?? '/', `http://${HOST}:${port}`);
    const refuse = (status: number, text: string) => {
      socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n`);
      socket.destroy();
    };
    const auth = checkRequest(req, url, { token, port });
    if (!auth.ok) {
      metrics.refused.inc();
      refuse(auth.status, auth.status === 401 ? 'Unauthorized' : 'Forbidden');
      return;
    }
    if (!live.handleUpgrade(req, socket, head, url.pathname)) refuse(404, 'Not Found');
  }

  const server = http.createServer((req, res) => void handle(req, res));
  server.on('upgrade', upgrade);
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(err.code === 'EADDRINUSE' ? new TopasError('INVALID_FLAGS', `--port ${port}: ${HOST}:${port} is in use`, { hint: 'leave --port out for any free port' }) : err),
    );
    server.listen(port, HOST, () => resolve());
  });
  const address = server.address();
  port = typeof address === 'object' && address ? address.port : port;
  return {
    port,
    token,
    url: `http://${HOST}:${port}/?token=${token}`,
    dir,
    index,
    close: () =>
      new Promise<void>((resolve) => {
        live.close();
        index.saveCache(true);
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
