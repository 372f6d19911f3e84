import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Backend, RemoteRunInfo, RemoteRunStore } from '../../src/backends/backend';
import { registerBackend } from '../../src/backends/registry';
import { TopasError } from '../../src/errors';
import type { LogLine } from '../../src/run/scenario-types';
import { cli } from '../helpers/cli';

// `topas test status|logs --backend NAME` read the runs a backend keeps by itself
// (Backend.remoteRuns): a backend here keeps three runs in memory, one of which
// goes on running (and logging) until a timer ends it.
const T0 = Date.parse('2026-12-03T02:00:00Z');
const runs: RemoteRunInfo[] = [
  { runId: 'r-pending', name: 'app-runner-aaaaaa', app: 'shop', phase: 'Pending', createdAt: '2026-12-03T02:00:03Z', message: 'waiting for TestRun app-runner-bbbbbb (one run of an app at a time)' },
  { runId: 'r-running', name: 'app-runner-bbbbbb', app: 'shop', phase: 'Running', createdAt: '2026-12-03T02:00:02Z', startedAt: '2026-12-03T02:00:02Z' },
  {
    runId: 'r-cron',
    name: 'shop-cron-cccccc-x1',
    app: 'shop',
    phase: 'Failed',
    createdAt: '2026-12-03T02:00:01Z',
    startedAt: '2026-12-03T02:00:01Z',
    finishedAt: '2026-12-03T02:00:04.500Z',
    outcome: { state: 'failed', scenarioStates: ['passed', 'failed'] },
  },
];
const seenEnv: Array<string | undefined> = [];
const lines = (id: string, n: number): LogLine[] => Array.from({ length: n }, (_, i) => ({ ts: T0 + i, runId: id, source: 'tests/a.lua', level: 'info', message: `line ${i + 1}` }));

const store: RemoteRunStore = {
  async list({ limit }) {
    return runs.slice(0, limit);
  },
  async get(id) {
    const r = runs.find((x) => x.runId === id || x.name === id);
    if (!r) throw new TopasError('FILE_NOT_FOUND', `no run "${id}"`);
    return r;
  },
  async logs(id, opts) {
    const r = await this.get(id);
    for (const l of lines(id, 2)) opts.onLog(l);
    if (!opts.follow || r.phase !== 'Running') return r;
    // two more lines while it runs, then it ends
    for (const l of lines(id, 4).slice(2)) {
      await new Promise((res) => setTimeout(res, 100));
      opts.onLog(l);
    }
    return { ...r, phase: 'Passed' };
  },
};

const keeper: Backend = {
  name: 'keeps-runs',
  async probe() {
    return { ok: false, reason: 'runs nothing here' };
  },
  async start() {
    throw new Error('never started');
  },
  async attach() {
    throw new Error('never attached');
  },
  async sweep() {
    return { removed: [] };
  },
  remoteRuns(opts) {
    seenEnv.push(opts.env?.TOPAS_KUBE_NAMESPACE);
    return store;
  },
};

let dir: string;
before(() => {
  registerBackend('keeps-runs', () => keeper);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-backend-runs-'));
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

test('test status --backend: the backend\'s runs, newest first, with app, state, duration and result; one by id', async () => {
  seenEnv.length = 0;
  const list = await cli(['test', 'status', '--backend', 'keeps-runs', '--namespace', 'e2e', '--json'], { cwd: dir });
  assert.equal(list.code, 0, list.stderr);
  const rows = JSON.parse(list.stdout) as Array<{ runId: string; state: string; result: string; durationMs?: number; app: string; name: string }>;
  assert.deepEqual(rows.map((r) => [r.runId, r.state]), [['r-pending', 'Pending'], ['r-running', 'Running'], ['r-cron', 'Failed']]);
  assert.match(rows[0].result, /waiting for TestRun app-runner-bbbbbb/);
  assert.equal(rows[2].result, 'failed: 1/2 scenario(s) passed');
  assert.equal(rows[2].durationMs, 3500);
  assert.equal(rows[2].name, 'shop-cron-cccccc-x1');
  assert.deepEqual(seenEnv, ['e2e'], '--namespace reaches the backend in its env');

  const table = await cli(['test', 'status', '--backend', 'keeps-runs'], { cwd: dir });
  assert.equal(table.code, 0, table.stderr);
  assert.match(table.stdout, /APP/);
  assert.match(table.stdout, /r-cron\s*│\s*shop\s*│\s*Failed\s*│\s*3\.50s/);

  const one = await cli(['test', 'status', 'shop-cron-cccccc-x1', '--backend', 'keeps-runs', '--json'], { cwd: dir });
  assert.equal(one.code, 0, one.stderr);
  assert.equal(JSON.parse(one.stdout).runId, 'r-cron');
  const missing = await cli(['test', 'status', 'nope', '--backend', 'keeps-runs'], { cwd: dir });
  assert.equal(missing.code, 2, missing.stderr);
  assert.match(missing.stderr, /no run "nope"/);
});

test('test logs --backend [--follow]: the lines so far; following, new ones until the run ends', async () => {
  const once = await cli(['test', 'logs', 'r-running', '--backend', 'keeps-runs'], { cwd: dir });
  assert.equal(once.code, 0, once.stderr);
  assert.deepEqual(once.stdout.trim().split('\n').map((l) => l.replace(/^\S+ /, '')), ['[tests/a.lua] line 1', '[tests/a.lua] line 2']);
  const followed = await cli(['test', 'logs', 'r-running', '--backend', 'keeps-runs', '--follow', '--json'], { cwd: dir });
  assert.equal(followed.code, 0, followed.stderr);
  assert.deepEqual(followed.stdout.trim().split('\n').map((l) => (JSON.parse(l) as LogLine).message), ['line 1', 'line 2', 'line 3', 'line 4']);
});

test('a backend that keeps no runs of its own is refused (exit 2), naming --backend', async () => {
  const r = await cli(['test', 'status', '--backend', 'local'], { cwd: dir });
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /--backend local keeps no runs of its own/);
  const unknown = await cli(['test', 'logs', 'x', '--backend', 'nope'], { cwd: dir });
  assert.equal(unknown.code, 2, unknown.stderr);
  assert.match(unknown.stderr, /unknown backend "nope"/);
});
