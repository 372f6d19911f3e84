/**
 * SUT startup on the docker backend vs. plain `docker run`, and the local
 * backend's start-up of the quickstart (embedded PostgreSQL + 2 api processes).
 *
 *   node dist/bench/sut-startup.js [rounds=2]
 *
 * Same containers both ways: local/postgres:15 + 2 replicas of local/mock-app:1.0.0
 * on one network. The peer starts them one after another with `docker run -d`
 * and polls readiness (postgres connect, then GET /healthz per replica) every
 * 100ms; topas runs `topas up --backend docker` in-process. Rounds alternate peer/topas; teardown
 * is not timed. Prints both times per round and the ratio of the medians
 * (topas / peer; the target is <= 1.0). Each round prints where the time went
 * for both, step by step as start..end ms since the start began: network,
 * create and start (the peer's `docker run` is both), readiness and initSQL;
 * topas's are its engine calls, timed in-process. Each round also times
 * `topas up --backend local` of the quickstart (fixtures/quickstart with an
 * absolute command path), which must not get slower from one version to the next.
 */
import { execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Client } from 'pg';

process.env.TESTCONTAINERS_RYUK_DISABLED = 'true';

import { runCli } from '../src/cli/main';
import { processIo } from '../src/io';
import { DockerDriver } from '../src/backends/docker/docker-driver';
import { DockerDatabases } from '../src/backends/docker/docker-databases';

const run = promisify(execFile);
const REPO_ROOT = path.resolve(__dirname, '..', '..');
const POLL_MS = 100;
const READY_TIMEOUT_MS = 60_000;

const SPEC = `
name: bench-startup
services:
  - name: api
    image: local/mock-app
    version: "1.0.0"
    port: 8080
    replicas: 2
    env: { DATABASE_URL: "\${db.url}" }
    ready: { http: /healthz, timeout: 60s }
databases:
  - name: db
    image: local/postgres:15
    port: 5432
    credentials: { user: admin, password: secret, dbname: testdb }
`;

const PHASES = ['prepare', 'network', 'create', 'start', 'readiness', 'initSQL'] as const;
type Phase = (typeof PHASES)[number] | 'run (create+start)';

/** Where the time of one start goes: every timed step as start..end ms since the start began. */
class PhaseLog {
  private readonly t0 = performance.now();
  readonly spans: Array<{ phase: Phase; what: string; start: number; end: number }> = [];

  async time<T>(phase: Phase, what: string, f: () => Promise<T>): Promise<T> {
    const start = performance.now() - this.t0;
    try {
      return await f();
    } finally {
      this.spans.push({ phase, what, start, end: performance.now() - this.t0 });
    }
  }

  lines(who: string): string[] {
    const order: Phase[] = ['prepare', 'network', 'run (create+start)', 'create', 'start', 'readiness', 'initSQL'];
    const phases = order.filter((p) => this.spans.some((s) => s.phase === p));
    return phases.map((p) => {
      const xs = this.spans.filter((s) => s.phase === p).sort((a, b) => a.start - b.start);
      return `  ${who} ${p}: ${xs.map((s) => `${s.what} ${s.start.toFixed(0)}..${s.end.toFixed(0)}`).join(', ')}`;
    });
  }
}

/** The phase log of the topas start in progress: the engine and driver calls below record into it. */
let topasPhases: PhaseLog | undefined;

/** Times topas's engine calls in-process (dockerode, the docker driver's readiness and initSQL). */
function instrumentTopas(): void {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const Docker = require('dockerode') as { prototype: Record<string, (...a: any[]) => Promise<any>> };
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const Container = require('dockerode/lib/container') as { prototype: Record<string, (...a: any[]) => Promise<any>> };
  const names = new Map<string, string>();
  const short = (name: string): string => name.replace(/^.*-(api-\d+|db)-\d+$/, '$1');
  const wrap = (proto: Record<string, (...a: any[]) => Promise<any>>, method: string, phase: Phase, what: (self: any, args: any[]) => string, skip?: (args: any[]) => boolean): void => {
    const orig = proto[method];
    proto[method] = function (this: unknown, ...args: any[]) {
      const log = topasPhases;
      if (!log || skip?.(args)) return orig.apply(this, args);
      return log.time(phase, what(this, args), () => orig.apply(this, args));
    };
  };
  wrap(Docker.prototype, 'createNetwork', 'network', () => 'network');
  const create = Docker.prototype.createContainer;
  Docker.prototype.createContainer = async function (this: unknown, opts: { name?: string }, ...rest: any[]) {
    const c = await create.call(this, opts, ...rest);
    names.set(c.id, short(opts.name ?? c.id.slice(0, 12)));
    return c;
  };
  wrap(Docker.prototype, 'createContainer', 'create', (_s, a) => short(a[0]?.name ?? '?'));
  wrap(Container.prototype, 'start', 'start', (self) => names.get(self.id) ?? String(self.id).slice(0, 12));
  const drv = DockerDriver.prototype as unknown as Record<string, (...a: any[]) => Promise<any>>;
  wrap(drv, 'prepare', 'prepare', () => 'images+network');
  wrap(drv, 'waitReplicaReady', 'readiness', (_s, a) => `${a[1]?.name}-${a[0]?.index}`, (a) => a[2]?.onceMs !== undefined);
  const dbs = DockerDatabases.prototype as unknown as Record<string, (...a: any[]) => Promise<any>>;
  wrap(dbs, 'waitPostgres', 'readiness', (_s, a) => a[0]?.spec?.name ?? 'db');
  wrap(dbs, 'runInitSql', 'initSQL', (_s, a) => a[0]?.spec?.name ?? 'db');
}

async function docker(...args: string[]): Promise<string> {
  return (await run('docker', args, { encoding: 'utf8' })).stdout.trim();
}

async function pollUntil(what: string, attempt: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (await attempt().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
  throw new Error(`${what}: not ready within ${READY_TIMEOUT_MS}ms`);
}

function httpOk(url: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get(url, { agent: false, timeout: 2000 }, (res) => {
      res.resume();
      resolve((res.statusCode ?? 0) < 400);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
  });
}

async function hostPort(name: string, port: number): Promise<number> {
  const out = await docker('port', name, String(port));
  return Number(out.split('\n')[0].split(':').pop());
}

/** The peer: plain docker CLI, one container after the other. */
async function peerStart(tag: string, log: PhaseLog): Promise<number> {
  const net = `bench-peer-${tag}`;
  const t0 = performance.now();
  await log.time('network', 'network', () => docker('network', 'create', '--label', `bench=${tag}`, net));
  await log.time('run (create+start)', 'db', () => docker('run', '-d', '--name', `${net}-db`, '--label', `bench=${tag}`, '--network', net, '--network-alias', 'db',
    '-e', 'POSTGRES_USER=admin', '-e', 'POSTGRES_PASSWORD=secret', '-e', 'POSTGRES_DB=testdb', '-p', '127.0.0.1::5432', 'local/postgres:15'));
  const pgPort = await hostPort(`${net}-db`, 5432);
  await log.time('readiness', 'db', () => pollUntil('postgres', async () => {
    const c = new Client({ host: '127.0.0.1', port: pgPort, user: 'admin', password: 'secret', database: 'testdb', connectionTimeoutMillis: 2000 });
    try {
      await c.connect();
      await c.query('SELECT 1');
      return true;
    } finally {
      await c.end().catch(() => {});
    }
  }));
  for (const i of [1, 2]) {
    const name = `${net}-api-${i}`;
    await log.time('run (create+start)', `api-${i}`, () => docker('run', '-d', '--name', name, '--label', `bench=${tag}`, '--network', net, '--network-alias', 'api',
      '-e', 'DATABASE_URL=postgres://admin:secret@db:5432/testdb', '-p', '127.0.0.1::8080', 'local/mock-app:1.0.0'));
    const p = await hostPort(name, 8080);
    await log.time('readiness', `api-${i}`, () => pollUntil(name, () => httpOk(`http://127.0.0.1:${p}/healthz`)));
  }
  return performance.now() - t0;
}

async function peerCleanup(tag: string): Promise<void> {
  const ids = (await docker('ps', '-aq', '--filter', `label=bench=${tag}`)).split('\n').filter(Boolean);
  if (ids.length) await docker('rm', '-f', ...ids);
  await docker('network', 'rm', `bench-peer-${tag}`).catch(() => '');
}

/** The quickstart as the local backend runs it: the mock app's server by absolute path. */
function localQuickstart(): string {
  const text = fs.readFileSync(path.join(REPO_ROOT, 'fixtures', 'quickstart', 'topas.yaml'), 'utf8');
  return text.replace('"../apps/mock-app/server.js"', JSON.stringify(path.join(REPO_ROOT, 'fixtures', 'apps', 'mock-app', 'server.js')));
}

/** `topas up` as a user runs it (spec loading, sweep, parallel start, readiness), then `topas down`. */
async function topasStart(tag: string, workDir: string, backend: 'docker' | 'local' = 'docker', template = true): Promise<number> {
  const dir = path.join(workDir, `${backend}-${tag}${template ? '' : '-init'}`);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'topas.yaml'), backend === 'docker' ? SPEC : localQuickstart());
  const quiet = { write: () => true };
  const base = processIo();
  const io = { ...base, cwd: dir, stdout: quiet, stderr: quiet, env: template ? base.env : { ...base.env, TOPAS_PG_TEMPLATE: 'off' } };
  const t0 = performance.now();
  if (backend === 'docker') topasPhases = new PhaseLog();
  let code: number;
  try {
    code = await runCli(['up', '--backend', backend], io);
  } finally {
    if (backend === 'docker') lastTopas = topasPhases;
    topasPhases = undefined;
  }
  const ms = performance.now() - t0;
  const down = await runCli(['down'], io);
  if (code !== 0 || down !== 0) throw new Error(`topas up exited ${code}, down ${down}`);
  return ms;
}

let lastTopas: PhaseLog | undefined;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

async function main(): Promise<void> {
  const rounds = Math.max(1, Math.min(10, Number(process.argv[2] ?? 2) || 2));
  execFileSync(path.join(REPO_ROOT, 'scripts', 'ensure-docker.sh'), { stdio: 'inherit' });
  execFileSync(path.join(REPO_ROOT, 'scripts', 'build-fixture-images.sh'), { stdio: 'inherit' });
  instrumentTopas();
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-bench-'));
  const peer: number[] = [];
  const topas: number[] = [];
  const topasInit: number[] = [];
  const local: number[] = [];
  try {
    // untimed: the first run of the database image keeps an initialised copy (postgres-template.ts); the timed ones start from it
    await topasStart(`${process.pid}-warm`, workDir);
    for (let i = 0; i < rounds; i++) {
      let peerLog: PhaseLog | undefined;
      const tag = `${process.pid}-${i}`;
      try {
        peerLog = new PhaseLog();
        peer.push(await peerStart(tag, peerLog));
      } finally {
        await peerCleanup(tag);
      }
      topasInit.push(await topasStart(tag, workDir, 'docker', false));
      const initLog = lastTopas;
      topas.push(await topasStart(tag, workDir));
      local.push(await topasStart(tag, workDir, 'local'));
      console.log(`round ${i + 1}: docker run + polling ${peer[i].toFixed(0)}ms, topas up ${topas[i].toFixed(0)}ms (${topasInit[i].toFixed(0)}ms initialising the database, TOPAS_PG_TEMPLATE=off), topas up --backend local (quickstart) ${local[i].toFixed(0)}ms`);
      console.log(`  phases (start..end ms since the start began):`);
      for (const l of [...(peerLog?.lines('peer') ?? []), ...(lastTopas?.lines('topas') ?? []), ...(initLog?.lines('topas (initialising)') ?? [])]) console.log(l);
    }
  } finally {
    fs.rmSync(workDir, { recursive: true, force: true });
  }
  const ratio = median(topas) / median(peer);
  console.log(`median: docker run + polling ${median(peer).toFixed(0)}ms, topas up ${median(topas).toFixed(0)}ms, ratio ${ratio.toFixed(2)} (target <= 0.8, issue 20)`);
  console.log(`median: topas up initialising the database as the peer does (TOPAS_PG_TEMPLATE=off) ${median(topasInit).toFixed(0)}ms, ratio ${(median(topasInit) / median(peer)).toFixed(2)}`);
  console.log(`median: topas up --backend local (quickstart: embedded PostgreSQL + 2 api processes) ${median(local).toFixed(0)}ms (target: not slower than the previous version)`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
