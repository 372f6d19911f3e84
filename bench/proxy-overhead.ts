/**
 * Proxy overhead: req/s and p99 of a fixed-response local HTTP server, direct vs
 * through an unshaped ShapingProxy (tcp mode and http mode), in one run.
 * `pipe` is the floor any in-process Node proxy starts from: a bare
 * `socket.pipe()` relay, no shaping code at all; compare tcp/http to it to see
 * what the shaping layer itself costs.
 * The server and the load generator run in their own child processes so the
 * proxy (in this process, as in topas) does not share a thread with either.
 *
 * The machine is shared, so configurations are measured in short interleaved
 * bursts and each one is summarized by its median burst.
 *
 *   node dist/bench/proxy-overhead.js [--seconds 1] [--connections 32] [--rounds 7]
 */
import { fork, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import { Pool } from 'undici';
import { ShapingProxy, type ProxyMode } from '../src/shape/shaping-proxy';

interface LoadResult {
  requests: number;
  errors: number;
  rps: number;
  p50Ms: number;
  p99Ms: number;
}

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
}

async function runServer(): Promise<void> {
  const body = Buffer.from('{"ok":true,"msg":"fixed response"}');
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
    res.end(body);
  });
  server.keepAliveTimeout = 60_000;
  server.listen(0, '127.0.0.1', () => process.send!({ port: (server.address() as net.AddressInfo).port }));
  process.on('disconnect', () => process.exit(0));
}

async function runLoad(port: number, connections: number, durationMs: number): Promise<LoadResult> {
  const pool = new Pool(`http://127.0.0.1:${port}`, { connections, pipelining: 1 });
  const latencies: number[] = [];
  let errors = 0;
  const t0 = performance.now();
  const end = t0 + durationMs;
  const loop = async () => {
    // bounded by time and by count
    for (let i = 0; i < 10_000_000 && performance.now() < end; i++) {
      const s = performance.now();
      try {
        const r = await pool.request({ path: '/', method: 'GET' });
        await r.body.dump();
        if (r.statusCode !== 200) errors++;
        latencies.push(performance.now() - s);
      } catch {
        errors++;
      }
    }
  };
  await Promise.all(Array.from({ length: connections }, loop));
  const elapsed = performance.now() - t0;
  await pool.close();
  latencies.sort((a, b) => a - b);
  const q = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? NaN;
  return { requests: latencies.length, errors, rps: (latencies.length / elapsed) * 1000, p50Ms: q(0.5), p99Ms: q(0.99) };
}

function child(role: string): ChildProcess {
  return fork(__filename, [role], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
}

function once<T>(cp: ChildProcess): Promise<T> {
  return new Promise((resolve, reject) => {
    cp.once('message', (m) => resolve(m as T));
    cp.once('exit', (code) => reject(new Error(`child exited with ${code}`)));
  });
}

async function measure(port: number, connections: number, durationMs: number): Promise<LoadResult> {
  const load = child('load');
  const result = once<LoadResult>(load);
  load.send({ port, connections, durationMs });
  const r = await result;
  load.disconnect();
  return r;
}

async function main(): Promise<void> {
  const seconds = arg('seconds', 1);
  const connections = arg('connections', 32);
  const rounds = arg('rounds', 7);
  const server = child('server');
  const proxies: ShapingProxy[] = [];
  const closers: Array<() => Promise<void>> = [];
  try {
    const { port } = await once<{ port: number }>(server);
    const targets = () => [{ host: '127.0.0.1', port }];
    const ports: Record<string, number> = { direct: port };
    for (const mode of ['tcp', 'http'] as ProxyMode[]) {
      const p = new ShapingProxy({ name: `bench-${mode}`, mode, targets });
      proxies.push(p);
      ports[mode] = (await p.start()).port;
    }
    const pipe = net.createServer((c) => {
      const up = net.connect({ host: '127.0.0.1', port, noDelay: true });
      c.setNoDelay(true);
      c.pipe(up).pipe(c);
      c.on('error', () => up.destroy());
      up.on('error', () => c.destroy());
    });
    await new Promise<void>((r) => pipe.listen(0, '127.0.0.1', () => r()));
    ports.pipe = (pipe.address() as net.AddressInfo).port;
    closers.push(
      () =>
        new Promise<void>((r) => {
          pipe.close(() => r());
        }),
    );
    // warm up every path (JIT, connection setup)
    for (const name of Object.keys(ports)) await measure(ports[name], connections, 1000);
    const runs: Record<string, LoadResult[]> = {};
    for (let round = 0; round < rounds; round++) {
      for (const name of Object.keys(ports)) {
        const r = await measure(ports[name], connections, seconds * 1000);
        console.log(`round ${round + 1} ${name.padEnd(6)} ${r.rps.toFixed(0).padStart(7)} req/s  p50 ${r.p50Ms.toFixed(2)}ms  p99 ${r.p99Ms.toFixed(2)}ms  errors ${r.errors}`);
        (runs[name] ??= []).push(r);
      }
    }
    const best: Record<string, LoadResult> = {};
    for (const [name, rs] of Object.entries(runs)) best[name] = [...rs].sort((a, b) => a.rps - b.rps)[Math.floor(rs.length / 2)];
    console.log(`\nmedian of ${rounds} interleaved bursts, ${connections} connections, ${seconds}s each:`);
    for (const name of Object.keys(ports)) {
      const r = best[name];
      const ratio = r.rps / best.direct.rps;
      console.log(
        `${name.padEnd(6)} ${r.rps.toFixed(0).padStart(7)} req/s  p99 ${r.p99Ms.toFixed(2).padStart(6)}ms  ratio ${ratio.toFixed(2)}  vs pipe ${(r.rps / best.pipe.rps).toFixed(2)}${name === 'direct' ? '' : ratio >= 0.8 ? '  (>= 0.8 ok)' : '  (below 0.8 target)'}`,
      );
    }
  } finally {
    await Promise.all(proxies.map((p) => p.close()));
    server.kill();
    for (const c of closers) void c();
  }
}

const role = process.argv[2];
if (role === 'server') {
  void runServer();
} else if (role === 'load') {
  process.once('message', (m: { port: number; connections: number; durationMs: number }) => {
    void runLoad(m.port, m.connections, m.durationMs).then((r) => process.send!(r));
  });
  process.on('disconnect', () => process.exit(0));
} else {
  main().catch((err) => {
    console.error(err);
    process.exitCode = 1;
  });
}
