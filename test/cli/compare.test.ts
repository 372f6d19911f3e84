import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { cli, REPO_ROOT } from '../helpers/cli';
import { startHttpServer, type TestHttpServer } from '../helpers/http-server';

/** `topas compare A B` over two real load runs (no app: records in cwd) and two hand-written scenario-run records. */
const SCRIPTS = path.join(REPO_ROOT, 'fixtures', 'load', 'no-app');
let server: TestHttpServer;
let cwd: string;
let delayMs = 0;
let fast: string;
let slow: string;

async function load(): Promise<string> {
  const r = await cli(['load', path.join(SCRIPTS, 'fixed.lua'), '--rate', '20/s', '--duration', '1s', '--json'], { cwd, env: { ...process.env, TARGET: `${server.url}/fixed` } });
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout).runId;
}

function writeRecord(id: string, states: Record<string, string>): void {
  const dir = path.join(cwd, '.topas', 'runs', id);
  fs.mkdirSync(dir, { recursive: true });
  const results = Object.entries(states).map(([name, state]) => ({ name, state, file: `${name}.lua`, steps: [], checks: [], durationMs: 1 }));
  fs.writeFileSync(path.join(dir, 'run.json'), JSON.stringify({ schemaVersion: 1, runId: id, kind: 'run', state: 'failed', results }));
}

before(async () => {
  cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-compare-'));
  server = await startHttpServer((_req, res) => setTimeout(() => res.end('ok'), delayMs));
  fast = await load();
  // far above what a loaded machine adds to the fast run's tail (p99 of 20 samples is its slowest one)
  delayMs = 400;
  slow = await load();
});

after(async () => {
  await server.close();
  fs.rmSync(cwd, { recursive: true, force: true });
});

describe('topas compare', () => {
  test('a slower B: p95 and p99 flagged per endpoint and overall, exit 4', async () => {
    const r = await cli(['compare', fast, slow, '--json'], { cwd });
    assert.equal(r.code, 4, r.stderr);
    const c = JSON.parse(r.stdout);
    const endpoint = `${server.url}/fixed`;
    for (const ep of ['(all)', endpoint]) {
      const p95 = c.rows.find((x: { endpoint: string; metric: string }) => x.endpoint === ep && x.metric === 'p95');
      assert.ok(p95 && p95.regression && p95.b > p95.a, JSON.stringify(c.rows));
    }
    const rate = c.rows.find((x: { endpoint: string; metric: string }) => x.endpoint === '(all)' && x.metric === 'rate');
    assert.equal(rate.regression, false, JSON.stringify(rate));
    const table = await cli(['compare', fast, slow, '--max-regression', '10%'], { cwd });
    assert.equal(table.code, 4);
    assert.match(table.stdout, /p95 ms .*REGRESSION/);
    assert.match(table.stdout, /regression\(s\) beyond 10\.0%/);
  });

  test('B faster than A, or within --max-regression: exit 0', async () => {
    const r = await cli(['compare', slow, fast], { cwd });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /no regression beyond 10\.0%/);
    const wide = await cli(['compare', fast, slow, '--max-regression', '100000%'], { cwd });
    assert.equal(wide.code, 0, wide.stdout);
  });

  test('--format html: one self-contained file with the regressions marked', async () => {
    const r = await cli(['compare', fast, slow, '--format', 'html', '-o', 'c.html'], { cwd });
    assert.equal(r.code, 4, r.stderr);
    const html = fs.readFileSync(path.join(cwd, 'c.html'), 'utf8');
    assert.match(html, /<tr class="regression"><td>\(all\)<\/td><td>p95 ms<\/td>/);
    assert.doesNotMatch(html, /<(script|link|img)[^>]+(src|href)=/i);
  });

  test('scenario runs: a scenario that passed in A and not in B is a regression; names are escaped in html', async () => {
    writeRecord('20260101-000000-000-10-aaaaaa', { login: 'passed', '<b>pay</b>': 'passed', gone: 'failed' });
    writeRecord('20260101-000000-000-10-bbbbbb', { login: 'passed', '<b>pay</b>': 'failed', added: 'passed' });
    const r = await cli(['compare', '20260101-000000-000-10-aaaaaa', '20260101-000000-000-10-bbbbbb', '--json'], { cwd });
    assert.equal(r.code, 4, r.stderr);
    const c = JSON.parse(r.stdout);
    assert.deepEqual(
      c.scenarios.map((s: { scenario: string; regression: boolean }) => [s.scenario, s.regression]),
      [['<b>pay</b>', true], ['added', false], ['gone', false], ['login', false]],
    );
    const h = await cli(['compare', '20260101-000000-000-10-aaaaaa', '20260101-000000-000-10-bbbbbb', '--format', 'html'], { cwd });
    assert.match(h.stdout, /&lt;b&gt;pay&lt;\/b&gt;/);
    assert.doesNotMatch(h.stdout, /<b>pay/);
  });

  test('an unknown run id exits 2 naming it', async () => {
    const r = await cli(['compare', fast, 'nope-nope'], { cwd });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /no run "nope-nope"/);
  });
});
