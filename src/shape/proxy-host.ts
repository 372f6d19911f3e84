import { spawn } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { TopasError } from '../errors';
import { isAlive, processStartTicks } from '../backends/local/processes';
import { ShapingProxy, type ProxyMode, type ProxyTarget } from './shaping-proxy';
import type { ShapeState } from './shape-state';

/**
 * The dependents' shaping proxies of a SUT that outlives the topas process
 * that started it (`topas up`, `--keep`): they live in a small detached
 * process of their own, so `${db.url}` references keep pointing at proxies
 * after `topas up` returns, and a later `topas run` shapes service-to-service
 * traffic too. Every run that holds the SUT talks to it over a loopback
 * control API (token in a header): it creates proxies, pushes each proxy's
 * upstream replicas whenever they change, and sets shapes.
 *
 * The host exits on `POST /exit` (`topas down`), on SIGTERM, and by itself
 * once the SUT's work directory is gone (a sweep after a crash), so it never
 * outlives its SUT.
 */

export interface ProxyHostInfo {
  pid: number;
  /** kernel start time of the host (processStartTicks), so a recycled pid is not taken for it */
  startTicks?: number;
  controlPort: number;
  token: string;
  /** where the control API listens: 127.0.0.1 (a detached host), or a cluster's proxy pod by its Service name */
  host?: string;
}

export const PROXY_HOST_TOKEN_ENV = 'TOPAS_PROXY_HOST_TOKEN';
const START_TIMEOUT_MS = 15_000;
const WATCH_INTERVAL_MS = 1_000;
const CALL_TIMEOUT_MS = 5_000;

export interface Hosted {
  service: string;
  proxy: ShapingProxy;
  targets: ProxyTarget[];
}

/**
 * The control API of a proxy host (token in the `x-topas-token` header):
 * `PUT /shape` sets a service's shape on its proxies, `PUT /targets` their
 * upstreams, `GET /stats`, `POST /exit`, and `POST /proxies` (creates one)
 * where the host makes proxies on demand. Shared by the detached host here
 * and the fixed one a cluster runs (proxy-host-fixed.ts).
 */
export function controlServer(opts: { token: string; hosted: Map<string, Hosted>; shapes: Map<string, ShapeState>; stop: () => void; addProxy?: (msg: Record<string, unknown>) => Promise<Hosted> }): http.Server {
  const { hosted, shapes } = opts;
  return http.createServer((req, res) => {
    const reply = (code: number, value: unknown) => {
      res.writeHead(code, { 'content-type': 'application/json' });
      res.end(JSON.stringify(value ?? null));
    };
    if (req.headers['x-topas-token'] !== opts.token) return reply(403, { error: 'bad token' });
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => {
      void (async () => {
        const msg = body ? (JSON.parse(body) as Record<string, unknown>) : {};
        switch (`${req.method} ${req.url}`) {
          case 'POST /proxies': {
            if (!opts.addProxy) return reply(404, { error: 'this host has a fixed set of proxies' });
            const h = hosted.get(String(msg.key)) ?? (await opts.addProxy(msg));
            return reply(200, h.proxy.stats().address);
          }
          case 'PUT /targets':
            for (const [key, targets] of Object.entries(msg)) {
              const h = hosted.get(key);
              if (h && Array.isArray(targets)) h.targets = targets as ProxyTarget[];
            }
            return reply(200, {});
          case 'PUT /shape': {
            const service = String(msg.service);
            const state = (msg.state ?? {}) as ShapeState;
            shapes.set(service, state);
            for (const h of hosted.values()) if (h.service === service) h.proxy.setShape(state);
            return reply(200, {});
          }
          case 'GET /stats':
            return reply(200, [...hosted.values()].map((h) => h.proxy.stats()));
          case 'POST /exit':
            reply(200, {});
            return opts.stop();
          default:
            return reply(404, { error: `unknown call ${req.method} ${req.url}` });
        }
      })().catch((err: unknown) => reply(500, { error: err instanceof Error ? err.message : String(err) }));
    });
  });
}

/** The host process: serves until told to exit or its SUT's work directory disappears. */
export async function runProxyHost(opts: { watchDir: string; readyFile: string; token: string }): Promise<void> {
  const hosted = new Map<string, Hosted>();
  const shapes = new Map<string, ShapeState>();
  let stopping = false;
  const stop = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    clearInterval(watch);
    await Promise.all([...hosted.values()].map((h) => h.proxy.close()));
    server.close();
    process.exit(0);
  };
  const server = controlServer({
    token: opts.token,
    hosted,
    shapes,
    stop: () => void stop(),
    addProxy: async (msg) => {
      const key = String(msg.key);
      const entry: Hosted = { service: String(msg.service), targets: [], proxy: undefined as unknown as ShapingProxy };
      entry.proxy = new ShapingProxy({ name: `${key} (dependents)`, mode: msg.mode as ProxyMode, listenHost: String(msg.listenHost), targets: () => entry.targets });
      await entry.proxy.start();
      entry.proxy.setShape(shapes.get(entry.service) ?? {});
      hosted.set(key, entry);
      return entry;
    },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const watch = setInterval(() => {
    if (!fs.existsSync(opts.watchDir)) void stop();
  }, WATCH_INTERVAL_MS);
  for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(sig, () => void stop());
  const info = { pid: process.pid, startTicks: processStartTicks(process.pid), controlPort: (server.address() as { port: number }).port };
  const tmp = `${opts.readyFile}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(info));
  fs.renameSync(tmp, opts.readyFile);
}

/**
 * `topas proxy-host --watch DIR --ready FILE` (token in TOPAS_PROXY_HOST_TOKEN):
 * the host's entry. Both entry points (bin/run.js, the single executable) call
 * it before loading the CLI framework, so a host is up in the time Node boots.
 */
export function proxyHostMain(argv: string[]): void {
  // a cluster's proxy pod: fixed proxies from TOPAS_PROXY_HOST_CONFIG (proxy-host-fixed.ts)
  if (argv[0] === '--serve') return (require('./proxy-host-fixed') as typeof import('./proxy-host-fixed')).fixedProxyHostMain(process.env);
  const flag = (name: string) => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const watchDir = flag('watch');
  const readyFile = flag('ready');
  const token = process.env[PROXY_HOST_TOKEN_ENV];
  if (!watchDir || !readyFile || !token) {
    process.stderr.write(`topas proxy-host: internal command, started by topas itself (needs --watch DIR --ready FILE and ${PROXY_HOST_TOKEN_ENV})\n`);
    process.exitCode = 2;
    return;
  }
  runProxyHost({ watchDir, readyFile, token }).catch((err: unknown) => {
    process.stderr.write(`topas proxy-host: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  });
}

/** A run's handle on a proxy host. */
export class ProxyHostClient {
  constructor(readonly info: ProxyHostInfo) {}

  /**
   * Starts a detached host for the SUT whose work directory is `watchDir`.
   * `command` is the argv that starts this topas (script or single executable).
   */
  static async start(opts: { watchDir: string; command: string[]; /** the environment topas runs in (StartContext.processEnv) */ env: NodeJS.ProcessEnv }): Promise<ProxyHostClient> {
    const token = crypto.randomBytes(18).toString('base64url');
    const readyFile = path.join(opts.watchDir, `proxy-host-${crypto.randomBytes(4).toString('hex')}.json`);
    const logFd = fs.openSync(path.join(opts.watchDir, 'proxy-host.log'), 'a');
    const [cmd, ...pre] = opts.command;
    const child = spawn(cmd, [...pre, 'proxy-host', '--watch', opts.watchDir, '--ready', readyFile], {
      detached: true,
      stdio: ['ignore', logFd, logFd],
      env: { ...opts.env, [PROXY_HOST_TOKEN_ENV]: token },
    });
    fs.closeSync(logFd);
    let exited: string | undefined;
    child.once('exit', (code, signal) => (exited = `exited (${signal ?? code})`));
    child.once('error', (err) => (exited = err.message));
    child.unref();
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (Date.now() < deadline && !exited) {
      if (fs.existsSync(readyFile)) {
        const ready = JSON.parse(fs.readFileSync(readyFile, 'utf8')) as { pid: number; startTicks?: number; controlPort: number };
        fs.rmSync(readyFile, { force: true });
        return new ProxyHostClient({ pid: ready.pid, startTicks: ready.startTicks, controlPort: ready.controlPort, token });
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    try {
      if (child.pid) process.kill(child.pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
    throw new TopasError('SUT_START_FAILED', `the shaping proxy host did not start: ${exited ?? `no answer in ${START_TIMEOUT_MS}ms`}`, {
      hint: `see ${path.join(opts.watchDir, 'proxy-host.log')}`,
    });
  }

  addProxy(key: string, service: string, mode: ProxyMode, listenHost: string): Promise<ProxyTarget> {
    return this.call('POST', '/proxies', { key, service, mode, listenHost }) as Promise<ProxyTarget>;
  }

  async setTargets(targets: Record<string, ProxyTarget[]>): Promise<void> {
    await this.call('PUT', '/targets', targets);
  }

  async setShape(service: string, state: ShapeState): Promise<void> {
    await this.call('PUT', '/shape', { service, state });
  }

  /** Asks the host to exit; kills it if it does not answer. */
  async exit(): Promise<void> {
    try {
      await this.call('POST', '/exit', {});
    } catch {
      /* killed below */
    }
    for (let i = 0; i < 40 && this.alive(); i++) await new Promise((r) => setTimeout(r, 50));
    if (this.alive()) {
      try {
        process.kill(this.info.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  }

  alive(): boolean {
    return isAlive({ pid: this.info.pid, startTicks: this.info.startTicks });
  }

  private call(method: string, pathName: string, body: unknown): Promise<unknown> {
    const payload = JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const req = http.request(
        {
          host: this.info.host ?? '127.0.0.1',
          port: this.info.controlPort,
          method,
          path: pathName,
          timeout: CALL_TIMEOUT_MS,
          headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload), 'x-topas-token': this.info.token },
        },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (text += c));
          res.on('end', () => {
            const value = text ? (JSON.parse(text) as unknown) : null;
            if (res.statusCode === 200) resolve(value);
            else reject(new Error(`shaping proxy host: ${(value as { error?: string } | null)?.error ?? `status ${res.statusCode}`}`));
          });
        },
      );
      req.on('timeout', () => req.destroy(new Error(`shaping proxy host: no answer in ${CALL_TIMEOUT_MS}ms`)));
      req.on('error', reject);
      req.end(payload);
    });
  }
}
