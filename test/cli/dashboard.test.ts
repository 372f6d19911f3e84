import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import WebSocket from 'ws';
import { captureIo, cli, REPO_ROOT } from '../helpers/cli';
import { runCli } from '../../src/cli/main';

/**
 * `topas dashboard` in-process over a folder with a passed run, a failed run
 * and a record full of markup: what the token guards, what the pages show.
 */
const HOSTILE = '<img src=x onerror=alert(1)>';
let dir: string;
let passId: string;
let failId: string;
let expectedReport: string;
let expectedCompare: string;
let dashboard: { cap: ReturnType<typeof captureIo>; done: Promise<number>; base: string; token: string; port: number } | undefined;

async function waitFor<T>(what: string, fn: () => T | undefined, limit = 400): Promise<T> {
  for (let i = 0; i < limit; i++) {
    const v = fn();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`gave up waiting for ${what}`);
}

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-dashboard-cli-'));
  for (const f of ['pass.lua', 'fail.lua']) fs.copyFileSync(path.join(REPO_ROOT, 'fixtures', 'cli', 'no-app', f), path.join(dir, f));
  const pass = await cli(['run', 'pass.lua'], { cwd: dir });
  assert.equal(pass.code, 0, pass.stderr);
  passId = fs.readdirSync(path.join(dir, '.topas', 'runs')).sort().pop()!;
  const fail = await cli(['run', 'fail.lua'], { cwd: dir });
  assert.equal(fail.code, 1, fail.stderr);
  failId = fs.readdirSync(path.join(dir, '.topas', 'runs')).sort().pop()!;
  assert.notEqual(passId, failId);
  const hostileDir = path.join(dir, '.topas', 'runs', '20261202-000000-000-10-abcdef');
  fs.mkdirSync(hostileDir, { recursive: true });
  fs.writeFileSync(path.join(hostileDir, 'run.json'), JSON.stringify({ runId: '20261202-000000-000-10-abcdef', kind: 'run', state: 'error', targets: [HOSTILE], app: HOSTILE, error: { name: 'Error', message: HOSTILE }, results: [] }));
  // what the commands print, rendered before the dashboard runs (runCli swaps the process-wide Io)
  const report = await cli(['report', passId, '--format', 'html'], { cwd: dir });
  assert.equal(report.code, 0, report.stderr);
  expectedReport = report.stdout;
  const compare = await cli(['compare', passId, failId, '--format', 'html'], { cwd: dir });
  expectedCompare = compare.stdout;

  const cap = captureIo({ cwd: dir });
  const done = runCli(['dashboard'], cap.io);
  const url = await waitFor('the dashboard URL', () => /http:\/\/127\.0\.0\.1:(\d+)\/\?token=([A-Za-z0-9_-]+)/.exec(cap.stdout) ?? undefined);
  dashboard = { cap, done, base: `http://127.0.0.1:${url[1]}`, token: url[2], port: Number(url[1]) };
});

after(async () => {
  if (dashboard) {
    dashboard.cap.signal('SIGINT');
    await dashboard.done;
  }
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

const get = (p: string, headers: Record<string, string> = {}) => fetch(`${dashboard!.base}${p}`, { headers, redirect: 'manual' });
const bearer = () => ({ authorization: `Bearer ${dashboard!.token}` });
const text = async (p: string) => {
  const res = await get(p, bearer());
  assert.equal(res.status, 200, p);
  return res.text();
};

/** fetch may not set Host: a plain request can */
function rawStatus(p: string, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port: dashboard!.port, path: p, headers }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
  });
}

/** Resolves to the HTTP status the upgrade was refused with, or 101 and the first message. */
function openWs(p: string, headers: Record<string, string> = {}): Promise<{ status: number; messages: Array<Record<string, unknown>> }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${dashboard!.port}${p}`, { headers });
    const messages: Array<Record<string, unknown>> = [];
    ws.on('unexpected-response', (_req, res) => {
      resolve({ status: res.statusCode ?? 0, messages });
      ws.terminate();
    });
    ws.on('message', (data) => {
      const m = JSON.parse(String(data)) as Record<string, unknown>;
      messages.push(m);
      if (m.type === 'queue' || m.type === 'end') ws.close();
    });
    ws.on('close', () => resolve({ status: 101, messages }));
    ws.on('error', (err) => (err.message.includes('Unexpected server response') ? undefined : reject(err)));
  });
}

describe('topas dashboard', () => {
  test('prints a 127.0.0.1 URL with a random token of 32 bytes', () => {
    assert.ok(dashboard);
    assert.ok(Buffer.from(dashboard.token, 'base64url').length >= 32);
    assert.match(dashboard.cap.stdout, /Ctrl-C to stop/);
  });

  test('without the token every page, the API, /metrics and both WebSockets are refused, and no data leaks', async () => {
    const paths = ['/', '/queue', `/runs/${passId}`, `/runs/${passId}/logs`, `/compare?a=${passId}&b=${failId}`, '/metrics', '/api/runs', '/api/queue', '/nothing', '/?state=passed'];
    for (const p of paths) {
      const res = await get(p);
      const body = await res.text();
      assert.equal(res.status, 401, p);
      assert.ok(!body.includes(passId) && !body.includes('pass.lua'), `${p} leaked data`);
      assert.equal((await get(p, { authorization: 'Bearer wrong' })).status, 403, p);
      assert.equal((await get(p, { cookie: `topas_dashboard_${dashboard!.port}=wrong` })).status, 403, p);
      assert.equal((await get(`${p}${p.includes('?') ? '&' : '?'}token=wrong`)).status, 403, p);
      // a DNS-rebound name carries the right token in vain
      assert.equal(await rawStatus(p, { ...bearer(), host: `evil.example:${dashboard!.port}` }), 403, p);
    }
    for (const p of ['/ws/queue', `/ws/logs/${passId}`]) {
      assert.equal((await openWs(p)).status, 401, p);
      assert.equal((await openWs(p, { cookie: `topas_dashboard_${dashboard!.port}=wrong` })).status, 403, p);
      assert.equal((await openWs(`${p}?token=wrong`)).status, 403, p);
      assert.equal((await openWs(p, { ...bearer(), origin: 'http://evil.example' })).status, 403, p);
    }
  });

  test('the printed URL sets an HttpOnly SameSite=Strict cookie and drops the token from the address; the cookie opens pages and WebSockets', async () => {
    const res = await get(`/?token=${dashboard!.token}&state=failed`);
    assert.equal(res.status, 303);
    assert.equal(res.headers.get('location'), '/?state=failed');
    const cookie = res.headers.get('set-cookie') ?? '';
    assert.match(cookie, new RegExp(`^topas_dashboard_${dashboard!.port}=${dashboard!.token}; HttpOnly; SameSite=Strict; Path=/$`));
    const jar = { cookie: cookie.split(';')[0] };
    const page = await get('/?state=failed', jar);
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-security-policy') ?? '', /default-src 'none'/);
    const queue = await openWs('/ws/queue', jar);
    assert.equal(queue.status, 101);
    assert.deepEqual(queue.messages[0], { type: 'queue', limitPerApp: 1, running: [], pending: [] });
  });

  test('history filters by state, name, kind and date; every record string is escaped', async () => {
    const failed = await text('/?state=failed');
    assert.ok(failed.includes(failId) && !failed.includes(passId));
    const passed = await text('/?state=passed');
    assert.ok(passed.includes(passId) && !passed.includes(failId));
    const byName = await text('/?name=fail.lua');
    assert.ok(byName.includes(failId) && !byName.includes(passId));
    assert.match(await text('/?kind=load'), /no runs match/);
    const today = new Date().toISOString().slice(0, 10);
    const dated = await text(`/?from=${today}&to=${today}`);
    assert.ok(dated.includes(passId) && dated.includes(failId) && !dated.includes('20261202-000000-000-10-abcdef'));
    const all = await text('/');
    assert.ok(!all.includes('<img'), 'the hostile record made no element');
    assert.ok(all.includes('&lt;img src=x onerror=alert(1)&gt;'));
    assert.match(all, /id="trends"[\s\S]*pass\.lua[\s\S]*100%/);
    const api = JSON.parse(await text('/api/runs?state=error')) as { items: Array<{ runId: string; state: string }>; total: number };
    assert.deepEqual(api.items.map((r) => [r.runId, r.state]), [['20261202-000000-000-10-abcdef', 'Error']]);
    const paged = JSON.parse(await text('/api/runs?per=1&page=2')) as { items: Array<{ runId: string }>; pages: number };
    assert.equal(paged.pages, 3);
    assert.equal(paged.items[0].runId, passId, 'newest first: the failed run, this one, the synthesized one');
  });

  test("a run's page is its HTML report, byte for byte; compare is `topas compare --format html`", async () => {
    assert.equal(await text(`/runs/${passId}`), expectedReport);
    assert.equal(await text(`/compare?a=${passId}&b=${failId}`), expectedCompare);
    assert.equal((await get('/runs/no-such-run', bearer())).status, 404);
    assert.equal((await get('/runs/..%2F..%2Fetc', bearer())).status, 404);
  });

  test("a finished run's log streams over the WebSocket and ends with its state", async () => {
    const r = await openWs(`/ws/logs/${failId}`, bearer());
    assert.equal(r.status, 101);
    const lines = r.messages.filter((m) => m.type === 'lines').flatMap((m) => m.lines as Array<{ message: string }>);
    assert.deepEqual(
      lines.map((l) => l.message),
      ['✓ arithmetic works', '✗ totals add up: fail.lua:7: expected 4 to be 5', '- never reached (skipped)'],
    );
    assert.deepEqual(r.messages.at(-1), { type: 'end', state: 'Failed' });
  });

  test('/metrics: runs by state, the queue, the dashboard requests and refusals', async () => {
    const m = await text('/metrics');
    assert.match(m, /^topas_runs\{state="Passed",kind="run"\} 1$/m);
    assert.match(m, /^topas_runs\{state="Failed",kind="run"\} 1$/m);
    assert.match(m, /^topas_runs\{state="Error",kind="run"\} 1$/m);
    assert.match(m, /^topas_queue_length 0$/m);
    assert.match(m, /^topas_queue_limit 1$/m);
    assert.match(m, /^topas_dashboard_requests_total\{route="history",status="200"\} \d+$/m);
    assert.ok(Number(/^topas_dashboard_refused_total (\d+)$/m.exec(m)?.[1]) >= 40);
  });

  test('--port that is taken: exit 2 naming it', async () => {
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as net.AddressInfo).port;
    try {
      const r = await cli(['dashboard', '--port', String(port)], { cwd: dir });
      assert.equal(r.code, 2);
      assert.match(r.stderr, new RegExp(`--port ${port}: 127\\.0\\.0\\.1:${port} is in use`));
    } finally {
      blocker.close();
    }
  });
});

describe('topas dashboard stops', () => {
  test('Ctrl-C ends it with exit 0 and the port is closed', async () => {
    const d = dashboard!;
    d.cap.signal('SIGINT');
    assert.equal(await d.done, 0);
    dashboard = undefined;
    await assert.rejects(fetch(`${d.base}/`, { headers: { authorization: `Bearer ${d.token}` } }));
    assert.match(d.cap.stderr, /dashboard stopped/);
  });
});
