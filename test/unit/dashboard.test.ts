import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { IncomingMessage } from 'node:http';
import { RunIndex, paginate, queueOf, testName, trends } from '../../src/dashboard/run-index';
import { checkRequest, cookieName } from '../../src/dashboard/auth';
import { LogTail } from '../../src/dashboard/log-tail';
import { historyPage } from '../../src/dashboard/pages';
import type { RunRecord } from '../../src/run/run-record';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

function scratch(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-dash-unit-'));
  dirs.push(d);
  return d;
}

function writeRecord(dir: string, record: Partial<RunRecord> & { runId: string }): void {
  const runDir = path.join(dir, '.topas', 'runs', record.runId);
  fs.mkdirSync(runDir, { recursive: true });
  fs.writeFileSync(path.join(runDir, 'run.json'), JSON.stringify(record));
}

/** Runs of two tests over three days; the live ones belong to this (living) process. */
function fixture(): string {
  const dir = scratch();
  const runs: Array<Partial<RunRecord> & { runId: string }> = [
    { runId: '20261130-100000-000-10-aaaaa1', kind: 'run', state: 'passed', startedAt: '2026-11-30T10:00:00.000Z', durationMs: 1000, targets: ['tests/smoke.lua'], app: 'shop', results: [] },
    { runId: '20261130-110000-000-10-aaaaa2', kind: 'run', state: 'failed', startedAt: '2026-11-30T11:00:00.000Z', durationMs: 3000, targets: ['tests/smoke.lua'], app: 'shop', results: [] },
    { runId: '20261201-100000-000-10-aaaaa3', kind: 'load', state: 'failed', exitCode: 4, startedAt: '2026-12-01T10:00:00.000Z', durationMs: 9000, file: 'tests/load.lua', app: 'shop' },
    { runId: '20261201-120000-000-10-aaaaa4', kind: 'run', state: 'timedOut', startedAt: '2026-12-01T12:00:00.000Z', durationMs: 5000, targets: ['tests/slow.lua'], results: [] },
    { runId: '20261202-090000-000-10-aaaaa5', kind: 'run', state: 'running', startedAt: '2026-12-02T09:00:00.000Z', pid: process.pid, targets: ['tests/smoke.lua'], app: 'shop', results: [] },
    { runId: '20261202-090001-000-10-aaaaa6', kind: 'run', state: 'pending', startedAt: '2026-12-02T09:00:01.000Z', runnerPid: process.pid, argv: ['tests/smoke.lua', '--app', 'topas.yaml'] },
    { runId: '20261202-090002-000-10-aaaaa7', kind: 'run', state: 'pending', startedAt: '2026-12-02T09:00:02.000Z', runnerPid: process.pid, argv: ['tests/smoke.lua'] },
  ];
  for (const r of runs) writeRecord(dir, r);
  return dir;
}

const ids = (runs: Array<{ runId: string }>) => runs.map((r) => r.runId.slice(-1)).join('');

describe('dashboard run index', () => {
  test('lists newest first with display states; filters by state, name, kind and date range', () => {
    const index = new RunIndex(fixture(), { persist: false });
    const all = index.list();
    assert.equal(ids(all), '7654321');
    assert.deepEqual(
      all.map((r) => r.state),
      ['Pending', 'Pending', 'Running', 'Failed', 'Failed', 'Failed', 'Passed'],
    );
    assert.equal(ids(index.list({ state: 'failed' })), '432');
    assert.equal(ids(index.list({ state: 'Passed' })), '1');
    assert.equal(ids(index.list({ state: 'pending' })), '76');
    assert.equal(ids(index.list({ kind: 'load' })), '3');
    assert.equal(ids(index.list({ kind: 'run', state: 'failed' })), '42');
    assert.equal(ids(index.list({ name: 'SMOKE' })), '76521');
    assert.equal(ids(index.list({ name: 'aaaaa3' })), '3', 'the run id matches too');
    assert.equal(ids(index.list({ from: '2026-12-01', to: '2026-12-01' })), '43', 'both ends of the range are whole days (UTC)');
    assert.equal(ids(index.list({ from: '2026-12-01' })), '76543');
    assert.equal(ids(index.list({ to: '2026-11-30' })), '21');
    assert.equal(ids(index.list({ from: 'yesterday' })), '7654321', 'a malformed date filters nothing');
  });

  test('a pending or running run whose process died is Error', () => {
    const dir = scratch();
    writeRecord(dir, { runId: '20261202-090000-000-10-bbbbb1', kind: 'run', state: 'running', pid: 2 ** 22 + 12345, results: [] });
    const [r] = new RunIndex(dir, { persist: false }).list();
    assert.equal(r.state, 'Error');
  });

  test('the test name: targets, else the leading arguments of a scheduled run, else the script', () => {
    assert.equal(testName({ runId: 'x', state: 'passed', targets: ['a.lua', 'b.lua'] }), 'a.lua b.lua');
    assert.equal(testName({ runId: 'x', state: 'pending', argv: ['tests/', '--parallel', '4'] }), 'tests/');
    assert.equal(testName({ runId: 'x', state: 'passed', kind: 'load', file: 'load.lua' }), 'load.lua');
  });

  test('rows are re-read when run.json changes, and kept in .topas/dashboard-index.json for the next start', () => {
    const dir = fixture();
    const index = new RunIndex(dir);
    assert.equal(index.get('20261202-090000-000-10-aaaaa5')?.state, 'Running');
    writeRecord(dir, { runId: '20261202-090000-000-10-aaaaa5', kind: 'run', state: 'passed', startedAt: '2026-12-02T09:00:00.000Z', durationMs: 77_000, targets: ['tests/smoke.lua'], results: [] });
    assert.equal(index.list({ state: 'passed' }).length, 2, 'the changed record was read again');
    index.saveCache(true);
    const cached = JSON.parse(fs.readFileSync(path.join(dir, '.topas', 'dashboard-index.json'), 'utf8')) as { entries: Record<string, unknown> };
    assert.equal(Object.keys(cached.entries).length, 7);
    assert.equal((fs.statSync(path.join(dir, '.topas', 'dashboard-index.json')).mode & 0o777).toString(8), '600');
    // a second index answers from the cache file: a record it has not re-read keeps its cached row
    const again = new RunIndex(dir);
    fs.rmSync(path.join(dir, '.topas', 'runs', '20261130-100000-000-10-aaaaa1'), { recursive: true });
    assert.equal(again.list().length, 6, 'a removed run leaves the list');
    assert.equal(again.get('20261202-090000-000-10-aaaaa5')?.durationMs, 77_000);
  });

  test('pagination, per-test trends and the queue', () => {
    const list = new RunIndex(fixture(), { persist: false }).list();
    const p2 = paginate(list, 2, 3);
    assert.equal(ids(p2.items), '432');
    assert.deepEqual([p2.page, p2.pages, p2.total], [2, 3, 7]);
    assert.equal(paginate(list, 99, 3).page, 3, 'past the end: the last page');
    const t = trends(list);
    const smoke = t.find((x) => x.name === 'tests/smoke.lua' && x.kind === 'run')!;
    assert.deepEqual([smoke.runs, smoke.passed, smoke.failed, smoke.passRate], [5, 1, 1, 0.5]);
    assert.deepEqual(smoke.durationsMs, [1000, 3000], 'finished runs, oldest first');
    assert.deepEqual(smoke.outcomes, [true, false]);
    const q = queueOf(list);
    assert.equal(q.limitPerApp, 1);
    assert.equal(ids(q.pending), '67', 'pending in the order they were queued');
    assert.equal(ids(q.running), '5');
  });

  test('every string from a record is escaped in the history page', () => {
    const dir = scratch();
    const hostile = '<img src=x onerror=alert(1)>';
    writeRecord(dir, { runId: '20261202-090000-000-10-ccccc1', kind: 'run', state: 'failed', targets: [hostile], app: `"><script>alert(2)</script>`, error: { name: 'Error', message: hostile }, results: [] });
    const list = new RunIndex(dir, { persist: false }).list();
    const html = historyPage({ nonce: 'n', filter: { name: hostile }, page: paginate(list, 1, 50), trends: trends(list), dir });
    assert.ok(!html.includes('<img'), 'no element from the record');
    assert.ok(!html.includes('<script>alert'), 'no script from the record');
    assert.ok(html.includes('&lt;img src=x onerror=alert(1)&gt;'));
  });
});

describe('dashboard token check', () => {
  const port = 4242;
  const token = 'secret-token-123';
  const req = (headers: Record<string, string>) => ({ headers: { host: `127.0.0.1:${port}`, ...headers } }) as unknown as IncomingMessage;
  const url = (q = '') => new URL(`http://127.0.0.1:${port}/${q}`);

  test('no token: 401; a wrong one: 403; the right one by query, bearer header or cookie: allowed', () => {
    assert.deepEqual(checkRequest(req({}), url(), { token, port }).ok, false);
    assert.equal((checkRequest(req({}), url(), { token, port }) as { status: number }).status, 401);
    assert.equal((checkRequest(req({}), url('?token=nope'), { token, port }) as { status: number }).status, 403);
    assert.equal((checkRequest(req({ authorization: 'Bearer nope' }), url(), { token, port }) as { status: number }).status, 403);
    assert.equal((checkRequest(req({ cookie: `${cookieName(port)}=nope` }), url(), { token, port }) as { status: number }).status, 403);
    assert.equal((checkRequest(req({ cookie: `${cookieName(port + 1)}=${token}` }), url(), { token, port }) as { status: number }).status, 401, "another dashboard's cookie is not this one's");
    assert.deepEqual(checkRequest(req({}), url(`?token=${token}`), { token, port }), { ok: true, via: 'query' });
    assert.deepEqual(checkRequest(req({ authorization: `Bearer ${token}` }), url(), { token, port }), { ok: true, via: 'header' });
    assert.deepEqual(checkRequest(req({ cookie: `a=b; ${cookieName(port)}=${token}` }), url(), { token, port }), { ok: true, via: 'cookie' });
  });

  test('a foreign Host (DNS rebinding) or Origin is refused even with the token', () => {
    assert.equal((checkRequest(req({ host: `evil.example:${port}` }), url(`?token=${token}`), { token, port }) as { status: number }).status, 403);
    assert.equal((checkRequest(req({ origin: 'http://evil.example' }), url(`?token=${token}`), { token, port }) as { status: number }).status, 403);
    assert.equal(checkRequest(req({ origin: `http://127.0.0.1:${port}` }), url(`?token=${token}`), { token, port }).ok, true);
  });
});

describe('dashboard log tail', () => {
  test('whole lines only, in order, once each; a half-written line waits for its newline; events left out', () => {
    const file = path.join(scratch(), 'log.ndjson');
    const tail = new LogTail(file);
    assert.deepEqual(tail.read().lines, [], 'no file yet');
    const line = (i: number, source = 'ticks') => JSON.stringify({ ts: i, runId: 'r', source, level: 'info', message: `tick ${i} ✓` });
    fs.writeFileSync(file, `${line(1)}\n${line(2)}\n${line(3, 'event')}\n${line(4).slice(0, 20)}`);
    assert.deepEqual(tail.read().lines.map((l) => l.message), ['tick 1 ✓', 'tick 2 ✓']);
    fs.appendFileSync(file, `${line(4).slice(20)}\n{damaged\n${line(5)}\n`);
    assert.deepEqual(tail.read().lines.map((l) => l.message), ['tick 4 ✓', 'tick 5 ✓']);
    assert.deepEqual(tail.read().lines, []);
  });
});
