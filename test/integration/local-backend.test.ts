import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Client } from 'pg';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { loadAppSpec } from '../../src/spec/load-app-spec';
import type { AppSpec } from '../../src/spec/app-spec';
import type { Sut, SutState } from '../../src/backends/backend';
import { LocalBackend } from '../../src/backends/local/local-backend';
import type { LocalStateData } from '../../src/backends/local/local-backend';
import { isAlive } from '../../src/backends/local/processes';
import { registryFile } from '../../src/backends/local/run-registry';

const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');
const QUICKSTART = path.join(REPO_ROOT, 'fixtures', 'quickstart', 'topas.yaml');

interface Resp {
  status: number;
  body: string;
  headers: http.IncomingHttpHeaders;
}

/** One request on a fresh connection (no pooled socket to a replica that is gone). */
function get(url: string, method = 'GET', body?: unknown): Promise<Resp> {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const req = http.request(url, { method, agent: false, timeout: 5000, headers: data ? { 'content-type': 'application/json' } : {} }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text, headers: res.headers }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(data);
  });
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

function psArgs(): string {
  return execFileSync('ps', ['-eo', 'pid,args'], { encoding: 'utf8' });
}

function stateData(state: SutState): LocalStateData {
  return state.data as LocalStateData;
}

/** Every pid/port of a state, to check after dispose that nothing is left. */
function footprint(state: SutState): { pids: number[]; ports: number[]; dirs: string[] } {
  const d = stateData(state);
  const pids: number[] = [];
  const ports: number[] = [];
  for (const s of Object.values(d.services)) {
    for (const r of s.replicas) {
      pids.push(r.pid);
      ports.push(r.port, ...Object.values(r.ports));
    }
  }
  if (d.postgres) {
    pids.push(d.postgres.pid);
    ports.push(d.postgres.port);
  }
  return { pids, ports, dirs: [d.workDir, ...d.extraDirs] };
}

async function assertNothingLeft(fp: { pids: number[]; ports: number[]; dirs: string[] }, runId: string): Promise<void> {
  for (const pid of fp.pids) assert.equal(isAlive({ pid }), false, `pid ${pid} still alive`);
  const ps = psArgs();
  for (const pid of fp.pids) assert.doesNotMatch(ps, new RegExp(`^\\s*${pid}\\s`, 'm'), `pid ${pid} still in ps`);
  for (const dir of fp.dirs) {
    assert.equal(fs.existsSync(dir), false, `${dir} still exists`);
    assert.ok(!ps.includes(dir), `a process still refers to ${dir}:\n${ps}`);
  }
  for (const port of fp.ports) assert.equal(await portOpen(port), false, `port ${port} still open`);
  assert.equal(fs.existsSync(registryFile(runId)), false, 'run registry file still there');
}

function tmpWorkDir(tag: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `topas-${tag}-`));
}

describe('local backend: quickstart', () => {
  let spec: AppSpec;
  let sut: Sut;
  const backend = new LocalBackend({ drainMs: 300 });
  const logs: string[] = [];
  const runId = `it-local-${process.pid}`;
  let startMs = 0;

  before(async () => {
    spec = await loadAppSpec(QUICKSTART);
    const t0 = Date.now();
    sut = await backend.start(spec, { runId, workDir: tmpWorkDir('local-it'), log: (l) => logs.push(l), processEnv: process.env });
    startMs = Date.now() - t0;
  });

  after(async () => {
    if (!sut) return;
    const fp = footprint(sut.state());
    await sut.dispose();
    await sut.dispose(); // idempotent
    await assertNothingLeft(fp, runId);
  });

  test('probe accepts the quickstart (every service has a command)', async () => {
    assert.deepEqual(await backend.probe(spec), { ok: true, reason: 'every service has a command' });
    const noCommand = { ...spec, services: [{ ...spec.services[0], command: undefined }] };
    assert.equal((await backend.probe(noCommand)).ok, false);
  });

  test('both replicas answer /healthz and services() shows them ready', async (t) => {
    t.diagnostic(`quickstart (postgres + 2 api replicas) started in ${startMs}ms`);
    const services = await sut.services();
    const api = services.find((s) => s.name === 'api')!;
    assert.equal(api.kind, 'service');
    assert.equal(api.replicas, 2);
    assert.equal(api.ready, true);
    assert.equal(api.version, '1.0.0');
    assert.equal(api.endpoints.length, 2);
    assert.equal(api.extraEndpoints?.grpc.length, 2);
    for (const url of api.endpoints) {
      const r = await get(url + '/healthz');
      assert.equal(r.status, 200);
    }
    const db = services.find((s) => s.name === 'db')!;
    assert.equal(db.kind, 'database');
    assert.equal(db.ready, true);
    assert.match(db.endpoints[0], /^postgres:\/\/admin:secret@127\.0\.0\.1:\d+\/testdb$/);
  });

  test('the database exists with its user, and initSQL made the table', async () => {
    const url = sut.endpoint('db');
    assert.equal(url, sut.endpointMap().db.urls[0]);
    const c = new Client({ connectionString: url });
    await c.connect();
    try {
      const r = await c.query("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_name = 'users'");
      assert.equal(r.rowCount, 1);
      const owner = await c.query("SELECT tableowner FROM pg_tables WHERE tablename = 'users'");
      assert.equal(owner.rows[0].tableowner, 'admin');
    } finally {
      await c.end();
    }
  });

  test('endpoint() round-robins over both replicas; the API reads and writes PostgreSQL', async () => {
    const seen = new Map<string, string>();
    for (let i = 0; i < 4; i++) {
      const url = sut.endpoint('api');
      const r = await get(url + '/healthz');
      seen.set(url, String(r.headers['x-topas-replica']));
    }
    assert.equal(seen.size, 2);
    assert.deepEqual([...seen.values()].sort(), ['1', '2']);

    const created = await get(sut.endpoint('api') + '/api/users', 'POST', { name: 'alice', role: 'admin' });
    assert.equal(created.status, 201);
    // written through one replica, read through the other
    const read = await get(sut.endpoint('api') + '/api/users/alice');
    assert.equal(read.status, 200);
    assert.equal(JSON.parse(read.body).role, 'admin');

    const map = sut.endpointMap();
    assert.equal(map.api.kind, 'service');
    assert.equal(map.api.urls.length, 2);
    assert.equal(map.api.extra.grpc.length, 2);
    assert.equal(map.db.db?.dbname, 'testdb');
  });

  test('gRPC Echo answers on the named port', async () => {
    const target = sut.endpoint('api', 'grpc');
    assert.match(target, /^127\.0\.0\.1:\d+$/);
    const def = protoLoader.loadSync(path.join(REPO_ROOT, 'fixtures', 'apps', 'mock-app', 'echo.proto'), { keepCase: true });
    const proto = grpc.loadPackageDefinition(def) as unknown as { topas: { EchoService: grpc.ServiceClientConstructor } };
    const client = new proto.topas.EchoService(target, grpc.credentials.createInsecure());
    try {
      const reply = await new Promise<{ message: string; version: string }>((resolve, reject) =>
        client.Echo({ message: 'hi' }, { deadline: Date.now() + 10_000 }, (err: Error | null, r: { message: string; version: string }) => (err ? reject(err) : resolve(r))),
      );
      assert.deepEqual(reply, { message: 'hi', version: '1.0.0' });
    } finally {
      client.close();
    }
    assert.throws(() => sut.endpoint('api', 'nope'), /no port named "nope"/);
  });

  test('logs and exec', async () => {
    const text = await sut.logs('api', { tail: 50 });
    assert.match(text, /\[api-1\] listening on \d+/);
    assert.match(text, /\[api-2\] listening on \d+/);
    const res = await sut.exec('api', ['node', '-e', 'console.log(process.env.TOPAS_SERVICE, process.env.DATABASE_URL.startsWith("postgres://"), process.cwd())']);
    assert.equal(res.code, 0);
    assert.equal(res.stdout.trim(), `api true ${spec.dir}`);
    const failing = await sut.exec('api', ['node', '-e', 'process.exit(7)']);
    assert.equal(failing.code, 7);
  });

  test('applyService to 1.1.0 while polling /version: no failed request, ends on 1.1.0', async (t) => {
    const pidsBefore = stateData(sut.state()).services.api.replicas.map((r) => r.pid);
    let failures = 0;
    let requests = 0;
    const versions = new Set<string>();
    let rolling = true;
    const poll = (async () => {
      const deadline = Date.now() + 120_000;
      // bounded in count and time; a few more after the rollout finished
      for (let after = 0; requests < 20_000 && Date.now() < deadline && (rolling || after++ < 20); ) {
        requests++;
        try {
          const r = await get(sut.endpoint('api') + '/version');
          if (r.status !== 200) failures++;
          else versions.add(JSON.parse(r.body).version);
        } catch {
          failures++;
        }
      }
    })();
    try {
      await sut.applyService('api', { version: '1.1.0' });
    } finally {
      rolling = false;
      await poll;
    }
    t.diagnostic(`${requests} requests during the rollout, versions seen: ${[...versions].join(', ')}`);
    assert.equal(failures, 0, `${failures} of ${requests} requests failed`);
    assert.ok(versions.has('1.0.0'), 'the poll ran before the rollout finished');
    assert.ok(versions.has('1.1.0'));
    for (let i = 0; i < 4; i++) {
      const r = await get(sut.endpoint('api') + '/version');
      assert.equal(JSON.parse(r.body).version, '1.1.0');
    }
    const api = (await sut.services()).find((s) => s.name === 'api')!;
    assert.equal(api.version, '1.1.0');
    assert.equal(api.replicas, 2);
    for (const pid of pidsBefore) assert.equal(isAlive({ pid }), false, `old replica ${pid} still running`);
  });

  test('a killed replica is replaced; waitReady returns when the replacement is ready', async () => {
    const before = stateData(sut.state()).services.api.replicas;
    const victim = before.find((r) => r.index === 1)!;
    await sut.kill('api', { replica: 1 });
    assert.equal(isAlive({ pid: victim.pid }), false);
    await sut.waitReady('api', 60_000);
    const afterState = stateData(sut.state()).services.api.replicas;
    assert.equal(afterState.length, 2);
    const replacement = afterState.find((r) => r.index === 1)!;
    assert.notEqual(replacement.pid, victim.pid);
    assert.equal((await get(`http://127.0.0.1:${replacement.port}/version`)).body, '{"version":"1.1.0"}');
    assert.ok(logs.some((l) => /healed to 2 replica/.test(l)), logs.join('\n'));
  });

  test('scale, stop and start change the declared count', async () => {
    await sut.scale('api', 3);
    assert.equal((await sut.services()).find((s) => s.name === 'api')!.replicas, 3);
    await sut.scale('api', 2);
    await sut.stop('api');
    const stopped = (await sut.services()).find((s) => s.name === 'api')!;
    assert.equal(stopped.replicas, 0);
    assert.throws(() => sut.endpoint('api'), /no running replica/);
    await sut.start('api');
    await sut.waitReady('api', 60_000);
    const started = (await sut.services()).find((s) => s.name === 'api')!;
    assert.equal(started.replicas, 2);
    assert.equal((await get(sut.endpoint('api') + '/api/users/alice')).status, 200);
  });

  test('restart replaces every replica one by one', async () => {
    const before = stateData(sut.state()).services.api.replicas.map((r) => r.pid).sort();
    await sut.restart('api');
    const after = stateData(sut.state()).services.api.replicas.map((r) => r.pid).sort();
    assert.equal(after.length, 2);
    for (const pid of before) assert.ok(!after.includes(pid));
  });
});

describe('local backend: attach and detach', () => {
  test('a detached run survives, attach() reopens it by pid, heals and disposes it', async () => {
    const spec = await loadAppSpec(QUICKSTART);
    const oneReplica: AppSpec = { ...spec, services: [{ ...spec.services[0], replicas: 1 }] };
    const runId = `it-attach-${process.pid}`;
    const first = await new LocalBackend().start(oneReplica, { runId, workDir: tmpWorkDir('local-attach'), log: () => {}, processEnv: process.env });
    let attached: Sut | undefined;
    try {
      const state = JSON.parse(JSON.stringify(first.state())) as SutState;
      await first.detach();
      const registry = JSON.parse(fs.readFileSync(registryFile(runId), 'utf8'));
      assert.equal(registry.detached, true);
      // a plain sweep leaves a detached run alone
      await new LocalBackend().sweep({ app: spec.name });
      const pid = stateData(state).services.api.replicas[0].pid;
      assert.equal(isAlive({ pid }), true);

      attached = await new LocalBackend().attach(oneReplica, state, { runId, workDir: stateData(state).workDir, log: () => {}, processEnv: process.env });
      assert.equal((await get(attached.endpoint('api') + '/healthz')).status, 200);
      assert.equal((await attached.services()).find((s) => s.name === 'db')!.ready, true);
      await attached.kill('api');
      assert.equal(isAlive({ pid }), false);
      await attached.waitReady('api', 60_000);
      assert.equal((await get(attached.endpoint('api') + '/version')).status, 200);
      const fp = footprint(attached.state());
      fp.pids.push(pid);
      await attached.dispose();
      await assertNothingLeft(fp, runId);
    } finally {
      await (attached ?? first).dispose();
    }
  });
});
