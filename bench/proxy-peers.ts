/**
 * What bench/proxy-overhead and bench/proxy-tail share: the fixed-response
 * server they both proxy to, the peers they set beside topas (Toxiproxy, a
 * bare Node `socket.pipe()` relay), wrk as the load generator, and flag and
 * tool lookup. One copy, so both benches measure exactly the same thing.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';

export const repo = path.resolve(__dirname, '..', '..');

export interface WrkResult {
  requests: number;
  errors: number;
  rps: number;
  p99Ms: number;
}

/** `--name value` from argv, else `dflt`. */
export function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1] : dflt;
}

/** A peer's binary: `.tools/bin` (scripts/install-peers.sh) first, then PATH. */
export function which(tool: string): string | undefined {
  const local = path.join(repo, '.tools', 'bin', tool);
  if (fs.existsSync(local)) return local;
  const r = spawnSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

export function loadAverage(): string {
  return fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
}

function toMs(v: string, unit: string): number {
  return unit === 'us' ? Number(v) / 1000 : unit === 's' ? Number(v) * 1000 : Number(v);
}

/** wrk with one thread (the cheapest client, so a proxy's cost shows as itself) and its p99. */
export function runWrk(bin: string, port: number, connections: number, durationMs: number): Promise<WrkResult> {
  return new Promise((resolve, reject) => {
    const secs = Math.max(1, Math.round(durationMs / 1000));
    const p = spawn(bin, ['-t', '1', '-c', String(connections), '-d', `${secs}s`, '--latency', `http://127.0.0.1:${port}/`], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const kill = setTimeout(() => p.kill('SIGKILL'), secs * 1000 + 30_000);
    p.on('close', () => {
      clearTimeout(kill);
      const total = /(\d+) requests in ([\d.]+)(\w+)/.exec(out);
      const p99 = /^\s+99%\s+([\d.]+)(us|ms|s)/m.exec(out);
      if (!total) return reject(new Error(`cannot read wrk output:\n${out}`));
      const errs = /Non-2xx or 3xx responses: (\d+)/.exec(out);
      const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
      const requests = Number(total[1]);
      resolve({
        requests,
        errors: (errs ? Number(errs[1]) : 0) + (sock ? sock.slice(1).reduce((n, x) => n + Number(x), 0) : 0),
        rps: requests / (toMs(total[2], total[3]) / 1000),
        p99Ms: p99 ? toMs(p99[1], p99[2]) : NaN,
      });
    });
  });
}

/** The upstream every path leads to; call in a forked child, it sends `{ port }` when listening. */
export function serveFixedResponse(): void {
  const body = Buffer.from('{"ok":true,"msg":"fixed response"}');
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
    res.end(body);
  });
  server.keepAliveTimeout = 60_000;
  server.listen(0, '127.0.0.1', () => process.send!({ port: (server.address() as net.AddressInfo).port }));
  process.on('disconnect', () => process.exit(0));
}

function freePort(): Promise<number> {
  return new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

/** Toxiproxy's server with one proxy to `upstreamPort` (no toxics): its listen port and pid. */
export async function startToxiproxy(bin: string, upstreamPort: number): Promise<{ port: number; pid: number; stop: () => void }> {
  const apiPort = await freePort();
  const listenPort = await freePort();
  const proc = spawn(bin, ['-host', '127.0.0.1', '-port', String(apiPort)], { stdio: 'ignore' });
  const stop = () => proc.kill('SIGKILL');
  let last: unknown;
  // bounded wait for its API
  for (let i = 0; i < 100; i++) {
    try {
      const res = await fetch(`http://127.0.0.1:${apiPort}/proxies`, {
        method: 'POST',
        body: JSON.stringify({ name: 'bench', listen: `127.0.0.1:${listenPort}`, upstream: `127.0.0.1:${upstreamPort}`, enabled: true }),
      });
      if (res.ok) return { port: listenPort, pid: proc.pid!, stop };
      last = new Error(`toxiproxy answered ${res.status}: ${await res.text()}`);
      break;
    } catch (e) {
      // not up yet
      last = e;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  stop();
  throw last instanceof Error ? last : new Error('toxiproxy did not start');
}

/** A bare Node `socket.pipe()` relay to `upstreamPort`: the floor of any in-process Node proxy. */
export async function startPipeRelay(upstreamPort: number): Promise<{ port: number; close: () => void }> {
  const pipe = net.createServer((c) => {
    const up = net.connect({ host: '127.0.0.1', port: upstreamPort, noDelay: true });
    c.setNoDelay(true);
    c.pipe(up).pipe(c);
    c.on('error', () => up.destroy());
    up.on('error', () => c.destroy());
  });
  await new Promise<void>((r) => pipe.listen(0, '127.0.0.1', () => r()));
  return { port: (pipe.address() as net.AddressInfo).port, close: () => pipe.close() };
}
