import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import fs from 'node:fs';
import { parseAppSpec } from '../../src/spec/load-app-spec';
import type { AppSpec } from '../../src/spec/app-spec';
import type { Sut } from '../../src/backends/backend';
import { TopasError } from '../../src/errors';
import { DockerBackend } from '../../src/backends/docker/docker-backend';

const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');
process.env.TESTCONTAINERS_RYUK_DISABLED = 'true';

function specText(app: string, version = '1.0.0', replicas = 2, withDb = true): string {
  return `
name: ${app}
services:
  - name: api
    image: local/mock-app
    version: "${version}"
    port: 8080
    ports: { grpc: 50051 }
    replicas: ${replicas}
    ${withDb ? 'env: { DATABASE_URL: "${db.url}" }' : ''}
    ready: { http: /healthz, timeout: 60s }
${
  withDb
    ? `databases:
  - name: db
    image: local/postgres:15
    port: 5432
    credentials: { user: admin, password: s3cret, dbname: testdb }
    initSQL: |
      CREATE TABLE users (id serial PRIMARY KEY, name text UNIQUE NOT NULL, role text);
      INSERT INTO users (name, role) VALUES ('alice', 'admin');
    ready: { timeout: 60s }`
    : ''
}
`;
}

function loadSpec(text: string, dir: string): AppSpec {
  const file = path.join(dir, 'topas.yaml');
  fs.writeFileSync(file, text);
  return parseAppSpec(text, file);
}

interface Resp {
  status: number;
  body: string;
}

/** One request on a fresh connection (no pooled socket to a replica that is gone). */
function get(url: string): Promise<Resp> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, timeout: 5000 }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

function docker(...args: string[]): string {
  return execFileSync('docker', args, { encoding: 'utf8' }).trim();
}

function labelled(kind: 'ps' | 'network', label: string): string[] {
  const out = kind === 'ps' ? docker('ps', '-aq', '--filter', `label=${label}`) : docker('network', 'ls', '-q', '--filter', `label=${label}`);
  return out.split('\n').filter((l) => l !== '');
}

function ctx(runId: string, workDir: string, lines: string[] = []) {
  return { runId, workDir, log: (l: string) => lines.push(l), processEnv: process.env };
}

describe('docker backend (real Docker engine)', () => {
  let workDir: string;
  const backend = new DockerBackend();
  const runId = `dt-${process.pid}-${Date.now()}`;
  let spec: AppSpec;
  let sut: Sut | undefined;

  before(() => {
    // Real engine, real images: set up here, never skipped.
    execFileSync(path.join(REPO_ROOT, 'scripts', 'ensure-docker.sh'), { stdio: 'inherit', timeout: 10 * 60_000 });
    execFileSync(path.join(REPO_ROOT, 'scripts', 'build-fixture-images.sh'), { stdio: 'inherit', timeout: 20 * 60_000 });
    workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-docker-test-'));
    spec = loadSpec(specText('dockertest'), workDir);
  });

  after(async () => {
    await sut?.dispose();
    fs.rmSync(workDir, { recursive: true, force: true });
  });

  test('probe says ok with an engine and images named', async () => {
    const r = await backend.probe(spec);
    assert.equal(r.ok, true, r.reason);
  });

  test('start: 2 replicas + postgres, endpoints answer, initSQL ran, labels everywhere', async () => {
    sut = await backend.start(spec, ctx(runId, workDir));
    const statuses = await sut.services();
    const api = statuses.find((s) => s.name === 'api')!;
    assert.equal(api.replicas, 2);
    assert.equal(api.ready, true);
    assert.equal(api.endpoints.length, 2);
    for (const url of api.endpoints) {
      assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/);
      assert.equal((await get(`${url}/healthz`)).status, 200);
    }
    assert.equal(api.extraEndpoints?.grpc.length, 2);
    const users = await get(`${sut.endpoint('api')}/api/users`);
    assert.equal(users.status, 200, users.body);
    assert.deepEqual(
      (JSON.parse(users.body) as Array<{ name: string }>).map((u) => u.name),
      ['alice'],
    );
    assert.match(sut.endpoint('db'), /^postgres:\/\/admin:s3cret@127\.0\.0\.1:\d+\/testdb$/);

    // three containers and one network, each with the four labels
    const ids = labelled('ps', `topas.run=${runId}`);
    assert.equal(ids.length, 3);
    for (const id of ids) {
      const labels = JSON.parse(docker('inspect', '-f', '{{json .Config.Labels}}', id)) as Record<string, string>;
      assert.equal(labels['topas.app'], 'dockertest');
      assert.equal(labels['topas.owner-pid'], String(process.pid));
      assert.ok(['api', 'db'].includes(labels['topas.service']));
    }
    const nets = labelled('network', `topas.run=${runId}`);
    assert.equal(nets.length, 1);
    const netLabels = JSON.parse(docker('network', 'inspect', '-f', '{{json .Labels}}', nets[0])) as Record<string, string>;
    assert.equal(netLabels['topas.app'], 'dockertest');
    assert.equal(netLabels['topas.owner-pid'], String(process.pid));
    assert.ok('topas.service' in netLabels);
  });

  test('exec runs in a replica; in-network names resolve (db, api)', async () => {
    const r = await sut!.exec('api', ['getent', 'hosts', 'db']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /\bdb\b/);
    const a = await sut!.exec('api', ['getent', 'ahosts', 'api']);
    assert.equal(a.code, 0);
    const ips = new Set(a.stdout.split('\n').filter((l) => l.includes('STREAM')).map((l) => l.split(/\s+/)[0]));
    assert.equal(ips.size, 2, `api resolves to both replicas: ${a.stdout}`);
    const bad = await sut!.exec('api', ['sh', '-c', 'echo oops >&2; exit 3']);
    assert.deepEqual([bad.code, bad.stderr.trim()], [3, 'oops']);
  });

  test('applyService 1.0.0 -> 1.1.0 under a 20 req/s poll: no failed request, ends on 1.1.0', async () => {
    const failures: string[] = [];
    const versions: string[] = [];
    let stop = false;
    const inFlight = new Set<Promise<void>>();
    const poller = (async () => {
      // bounded: at most 20/s for at most 3 minutes
      for (let i = 0; i < 20 * 180 && !stop; i++) {
        const p = (async () => {
          try {
            const r = await get(`${sut!.endpoint('api')}/version`);
            if (r.status !== 200) failures.push(`HTTP ${r.status}`);
            else versions.push((JSON.parse(r.body) as { version: string }).version);
          } catch (e) {
            failures.push((e as Error).message);
          }
        })();
        inFlight.add(p);
        void p.finally(() => inFlight.delete(p));
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    await new Promise((r) => setTimeout(r, 500));
    await sut!.applyService('api', { version: '1.1.0' });
    await new Promise((r) => setTimeout(r, 500));
    stop = true;
    await poller;
    await Promise.all([...inFlight]);
    assert.deepEqual(failures, []);
    assert.ok(versions.length >= 20, `polled ${versions.length} times`);
    assert.equal(versions[0], '1.0.0');
    assert.equal(versions[versions.length - 1], '1.1.0');
    const api = (await sut!.services()).find((s) => s.name === 'api')!;
    assert.equal(api.version, '1.1.0');
    assert.equal(api.endpoints.length, 2);
    for (const url of api.endpoints) assert.equal(JSON.parse((await get(`${url}/version`)).body).version, '1.1.0');
    assert.equal(labelled('ps', `topas.run=${runId}`).length, 3, 'old replicas are removed');
  });

  test('kill a replica: the reconcile loop replaces it', async () => {
    const before = labelled('ps', `topas.run=${runId}`).sort();
    await sut!.kill('api', { replica: 1 });
    await sut!.waitReady('api', 60_000);
    const api = (await sut!.services()).find((s) => s.name === 'api')!;
    assert.equal(api.endpoints.length, 2);
    for (const url of api.endpoints) assert.equal((await get(`${url}/healthz`)).status, 200);
    const after = labelled('ps', `topas.run=${runId}`).sort();
    assert.equal(after.length, 3);
    assert.notDeepEqual(after, before);
    const running = docker('ps', '-q', '--filter', `label=topas.run=${runId}`).split('\n').filter(Boolean);
    assert.equal(running.length, 3);
  });

  test('scale, stop, start, logs', async () => {
    await sut!.scale('api', 3);
    assert.equal((await sut!.services()).find((s) => s.name === 'api')!.endpoints.length, 3);
    await sut!.scale('api', 2);
    assert.equal((await sut!.services()).find((s) => s.name === 'api')!.endpoints.length, 2);
    await sut!.stop('api');
    assert.equal((await sut!.services()).find((s) => s.name === 'api')!.replicas, 0);
    await sut!.start('api');
    const api = (await sut!.services()).find((s) => s.name === 'api')!;
    assert.equal(api.endpoints.length, 2);
    assert.match(await sut!.logs('api'), /listening on 8080/);
    assert.match(await sut!.logs('db', { tail: 50 }), /ready to accept connections/);
  });

  test('missing image -> IMAGE_NOT_FOUND, nothing left behind', async () => {
    const missingRun = `${runId}-missing`;
    const s = loadSpec(specText('dockertest-missing', '9.9.9', 1, false), workDir);
    await assert.rejects(backend.start(s, ctx(missingRun, workDir)), (err: unknown) => {
      assert.ok(err instanceof TopasError);
      assert.equal(err.code, 'IMAGE_NOT_FOUND');
      assert.equal(err.message, 'image local/mock-app:9.9.9 is not available locally and could not be pulled');
      assert.match(err.hint ?? '', /build-fixture-images\.sh/);
      return true;
    });
    assert.deepEqual(labelled('ps', `topas.run=${missingRun}`), []);
    assert.deepEqual(labelled('network', `topas.run=${missingRun}`), []);
  });

  test('sweep removes a run whose owner died and keeps a live one', async () => {
    const deadRun = `${runId}-dead`;
    const s = loadSpec(specText('dockertest-sweep', '1.0.0', 1, false), workDir);
    // A child process starts a SUT and dies without cleaning up (SIGKILL).
    const script = `
      const { DockerBackend } = require(${JSON.stringify(path.join(REPO_ROOT, 'dist/src/backends/docker/docker-backend.js'))});
      const { parseAppSpec } = require(${JSON.stringify(path.join(REPO_ROOT, 'dist/src/spec/load-app-spec.js'))});
      const spec = parseAppSpec(${JSON.stringify(specText('dockertest-sweep', '1.0.0', 1, false))}, ${JSON.stringify(s.file)});
      new DockerBackend().start(spec, { runId: ${JSON.stringify(deadRun)}, workDir: ${JSON.stringify(workDir)}, log() {}, processEnv: process.env })
        .then(() => process.kill(process.pid, 'SIGKILL'), (e) => { console.error(e); process.exit(1); });`;
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'inherit', 'inherit'], env: { ...process.env, TESTCONTAINERS_RYUK_DISABLED: 'true' } });
    const exit = await new Promise<NodeJS.Signals | number | null>((resolve) => child.on('exit', (code, sig) => resolve(sig ?? code)));
    assert.equal(exit, 'SIGKILL');
    assert.equal(labelled('ps', `topas.run=${deadRun}`).length, 1);
    assert.equal(labelled('network', `topas.run=${deadRun}`).length, 1);

    const keep = await backend.sweep({ app: 'dockertest' });
    assert.deepEqual(keep.removed, [], 'the live run is not swept');
    assert.equal(labelled('ps', `topas.run=${runId}`).length, 3);

    const swept = await backend.sweep({ app: 'dockertest-sweep' });
    assert.equal(swept.removed.length, 1);
    assert.deepEqual(labelled('ps', `topas.run=${deadRun}`), []);
    assert.deepEqual(labelled('network', `topas.run=${deadRun}`), []);
  });

  test('state + attach in the same process see the same replicas; dispose removes everything', async () => {
    const state = sut!.state();
    await sut!.detach();
    const again = await backend.attach(spec, state, ctx(runId, workDir));
    assert.equal((await get(`${again.endpoint('api')}/healthz`)).status, 200);
    assert.equal((await again.services()).find((s) => s.name === 'api')!.endpoints.length, 2);
    await again.dispose();
    await again.dispose(); // idempotent
    await sut!.dispose();
    sut = undefined;
    assert.deepEqual(labelled('ps', `topas.run=${runId}`), []);
    assert.deepEqual(labelled('network', `topas.run=${runId}`), []);
  });
});
