import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { TopasError } from '../../src/errors';
import type { AppSpec, ServiceSpec } from '../../src/spec/app-spec';
import type { SutState } from '../../src/backends/backend';
import { LocalBackend } from '../../src/backends/local/local-backend';
import type { LocalStateData } from '../../src/backends/local/local-backend';
import { isAlive } from '../../src/backends/local/processes';
import { registryFile } from '../../src/backends/local/run-registry';

const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');
const FIXTURE_DIR = path.join(REPO_ROOT, 'fixtures', 'quickstart');

function service(name: string, command: string[], extra: Partial<ServiceSpec> = {}): ServiceSpec {
  return {
    name,
    command,
    port: 8080,
    ports: {},
    replicas: 1,
    env: {},
    ready: { kind: 'http', path: '/healthz', timeoutMs: 30_000 },
    dependsOn: [],
    ...extra,
  };
}

function appSpec(name: string, services: ServiceSpec[], withDb = false): AppSpec {
  return {
    name,
    file: path.join(FIXTURE_DIR, 'topas.yaml'),
    dir: FIXTURE_DIR,
    services,
    databases: withDb
      ? [{ name: 'db', engine: 'postgres', port: 5432, credentials: { user: 'u', password: 'p', dbname: 'd' }, initSQL: 'CREATE TABLE t (x int);', ready: { timeoutMs: 30_000 } }]
      : [],
  };
}

function tmpWorkDir(tag: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `topas-${tag}-`));
}

function psArgs(): string {
  return execFileSync('ps', ['-eo', 'pid,args'], { encoding: 'utf8' });
}

async function startError(p: Promise<unknown>): Promise<TopasError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof TopasError, `expected a TopasError, got ${String(e)}`);
    return e;
  }
  assert.fail('start was expected to fail');
}

const MOCK_APP = path.join(REPO_ROOT, 'fixtures', 'apps', 'mock-app', 'server.js');

describe('local backend: failed starts leave nothing behind', () => {
  test('a service that exits during readiness fails fast with its last log lines; postgres and the healthy service are gone', async () => {
    const marker = `crashy-${process.pid}-${Date.now()}`;
    const spec = appSpec(
      'failing',
      [
        // the extra argv is only a marker to find this process in `ps`
        service('ok', ['node', MOCK_APP, `ok-${marker}`], { dependsOn: ['db'] }),
        service('crashy', ['node', '-e', `console.log("boot ${marker}"); console.error("fatal: config missing"); process.exit(3)`], { dependsOn: ['db', 'ok'] }),
      ],
      true,
    );
    const workDir = tmpWorkDir('local-fail');
    const runId = `it-fail-${process.pid}`;
    const err = await startError(new LocalBackend().start(spec, { runId, workDir, log: () => {}, processEnv: process.env }));
    assert.equal(err.code, 'SUT_START_FAILED');
    assert.match(err.message, /service crashy replica 1: exited/);
    assert.match(err.message, /exit code 3/);
    assert.match(err.message, /fatal: config missing/);
    assert.equal(fs.existsSync(workDir), false);
    assert.equal(fs.existsSync(registryFile(runId)), false);
    const ps = psArgs();
    assert.ok(!ps.includes(workDir), `a process still runs from ${workDir}:\n${ps}`);
    assert.ok(!ps.includes(marker));
    assert.ok(!ps.includes(`ok-${marker}`), `the healthy service still runs:\n${ps}`);
  });

  test('a service that never gets ready gives READINESS_TIMEOUT and is stopped', async () => {
    const marker = `stuck-${process.pid}-${Date.now()}`;
    const spec = appSpec('stuck', [
      service('stuck', ['node', '-e', `console.log("waiting ${marker}"); setInterval(() => {}, 1000)`], {
        ready: { kind: 'tcp', timeoutMs: 1000 },
      }),
    ]);
    const workDir = tmpWorkDir('local-stuck');
    const runId = `it-stuck-${process.pid}`;
    const err = await startError(new LocalBackend().start(spec, { runId, workDir, log: () => {}, processEnv: process.env }));
    assert.equal(err.code, 'READINESS_TIMEOUT');
    assert.match(err.message, /^service stuck replica 1: not ready after 1\.00s \(tcp 127\.0\.0\.1:\d+: last result ECONNREFUSED\)/);
    assert.match(err.message, new RegExp(`waiting ${marker}`));
    assert.ok(!psArgs().includes(marker));
    assert.equal(fs.existsSync(workDir), false);
    assert.equal(fs.existsSync(registryFile(runId)), false);
  });

  test('a command that does not exist is SUT_START_FAILED naming the command', async () => {
    const spec = appSpec('missing', [service('ghost', ['./no-such-binary-here'])]);
    const workDir = tmpWorkDir('local-missing');
    const err = await startError(new LocalBackend().start(spec, { runId: `it-missing-${process.pid}`, workDir, log: () => {}, processEnv: process.env }));
    assert.equal(err.code, 'SUT_START_FAILED');
    assert.match(err.message, /service ghost replica 1: cannot start `\.\/no-such-binary-here`/);
    assert.equal(fs.existsSync(workDir), false);
  });

  test('aborting the start signal stops the start and removes what was made', async () => {
    const marker = `slow-${process.pid}-${Date.now()}`;
    const spec = appSpec('aborted', [
      service('slow', ['node', '-e', `console.log("${marker}"); setInterval(() => {}, 1000)`], { replicas: 2, ready: { kind: 'log', pattern: 'never printed', timeoutMs: 60_000 } }),
    ]);
    const workDir = tmpWorkDir('local-abort');
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), 500);
    try {
      const err = await startError(new LocalBackend().start(spec, { runId: `it-abort-${process.pid}`, workDir, log: () => {}, signal: ac.signal, processEnv: process.env }));
      assert.equal(err.code, 'INTERRUPTED');
    } finally {
      clearTimeout(timer);
    }
    assert.ok(!psArgs().includes(marker));
    assert.equal(fs.existsSync(workDir), false);
  });
});

describe('local backend: sweep', () => {
  test('sweep removes what a run whose owner died left behind', async () => {
    const runId = `it-sweep-${process.pid}-${Date.now()}`;
    const app = `sweep-${process.pid}`;
    const spec = appSpec(app, [service('api', ['node', MOCK_APP], { replicas: 2 })]);
    const workDir = tmpWorkDir('local-sweep');
    const backendJs = path.join(REPO_ROOT, 'dist', 'src', 'backends', 'local', 'local-backend.js');
    // the owner: starts the run, prints its state, then waits to be killed without cleaning up
    const script = `
      const { LocalBackend } = require(${JSON.stringify(backendJs)});
      new LocalBackend().start(JSON.parse(process.env.SPEC), { runId: ${JSON.stringify(runId)}, workDir: ${JSON.stringify(workDir)}, log: () => {}, processEnv: process.env })
        .then((sut) => { process.stdout.write(JSON.stringify(sut.state()) + '\\n'); setInterval(() => {}, 1000); },
              (e) => { console.error(e.message); process.exit(1); });`;
    const owner = spawn(process.execPath, ['-e', script], { env: { ...process.env, SPEC: JSON.stringify(spec) }, stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      const line = await new Promise<string>((resolve, reject) => {
        let out = '';
        owner.stdout.on('data', (c: Buffer) => {
          out += c.toString();
          if (out.includes('\n')) resolve(out.split('\n')[0]);
        });
        owner.on('exit', (code) => reject(new Error(`owner exited with ${code} before starting`)));
      });
      const state = JSON.parse(line) as SutState;
      const pids = (state.data as LocalStateData).services.api.replicas.map((r) => r.pid);
      assert.equal(pids.length, 2);

      // owner alive: a plain sweep keeps the run
      assert.deepEqual((await new LocalBackend().sweep({ app })).removed, []);
      for (const pid of pids) assert.equal(isAlive({ pid }), true);

      owner.kill('SIGKILL');
      await new Promise((r) => owner.once('exit', r));
      // replicas are their own process groups: the owner's death did not take them along
      for (const pid of pids) assert.equal(isAlive({ pid }), true);

      const lines: string[] = [];
      const { removed } = await new LocalBackend().sweep({ app, log: (l) => lines.push(l) });
      assert.equal(removed.length, 1);
      assert.match(removed[0], new RegExp(`${runId}.*2 process group`));
      for (const pid of pids) assert.equal(isAlive({ pid }), false);
      assert.equal(fs.existsSync(workDir), false);
      assert.equal(fs.existsSync(registryFile(runId)), false);
    } finally {
      if (owner.exitCode === null && owner.signalCode === null) owner.kill('SIGKILL');
      await new LocalBackend().sweep({ app, all: true });
    }
  });
});
