import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { cli, REPO_ROOT } from '../helpers/cli';
import { startHttpServer, type TestHttpServer } from '../helpers/http-server';

const FIX = path.join(REPO_ROOT, 'fixtures', 'export');
let cwd: string;
let server: TestHttpServer;

before(async () => {
  cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-export-cli-'));
  server = await startHttpServer((req, res) => {
    res.setHeader('content-type', 'application/json');
    if (req.url === '/login') return res.end(JSON.stringify({ token: 'tok-xyz-123456', user: { id: 'u-42' } }));
    if (req.url === '/healthz') return res.end(JSON.stringify({ status: 'ok' }));
    if (req.url === '/version') return res.end(JSON.stringify({ version: '1.0.0' }));
    res.end(JSON.stringify({ ok: true }));
  });
});

after(async () => {
  await server.close();
  fs.rmSync(cwd, { recursive: true, force: true });
});

function har(entries: Array<{ t: number; method: string; url: string; headers?: Record<string, string>; body?: string; status?: number; mime?: string; response?: string; time?: number }>): string {
  const base = Date.parse('2026-01-01T00:00:00Z');
  const file = path.join(cwd, `rec-${Math.random().toString(36).slice(2)}.har`);
  const log = {
    version: '1.2',
    creator: { name: 'test', version: '1' },
    entries: entries.map((e) => ({
      startedDateTime: new Date(base + e.t).toISOString(),
      time: e.time ?? 10,
      request: { method: e.method, url: e.url, headers: Object.entries(e.headers ?? {}).map(([name, value]) => ({ name, value })), ...(e.body ? { postData: { mimeType: 'application/json', text: e.body } } : {}) },
      response: { status: e.status ?? 200, content: { mimeType: e.mime ?? 'application/json', text: e.response ?? '{}' } },
    })),
  };
  fs.writeFileSync(file, JSON.stringify({ log }));
  return file;
}

describe('topas export (CLI)', () => {
  test('untranslatable calls: exit 2 with each file:line; --allow-partial writes the rest', async () => {
    const file = path.join(FIX, 'partial.lua');
    const r = await cli(['export', 'k6', file, '--base-url', server.url], { cwd });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /error \[UNTRANSLATABLE\]: .*4 parts of the scenario have no k6 equivalent/);
    for (const l of [10, 11, 12, 15]) assert.match(r.stderr, new RegExp(`partial\\.lua:${l}: `));
    assert.match(r.stderr, /--allow-partial/);
    const out = path.join(cwd, 'partial.k6.js');
    const ok = await cli(['export', 'k6', file, '--base-url', server.url, '--allow-partial', '-o', out], { cwd });
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stderr, /left out of the k6 script \(--allow-partial\):\n {2}\S*partial\.lua:10: db\.connect\(\)/);
    assert.match(fs.readFileSync(out, 'utf8'), /http\.request\("GET", "http:\/\/127\.0\.0\.1:\d+\/fixed"/);
  });

  test('an unknown target is invalid input', async () => {
    const r = await cli(['export', 'jmeter', path.join(FIX, 'flow.lua')], { cwd });
    assert.equal(r.code, 2, r.stderr);
  });

  test('load flags override the script options as for topas load', async () => {
    const r = await cli(['export', 'k6', path.join(FIX, 'flow.lua'), '--base-url', server.url, '--rate', '7/s', '--duration', '3s', '--max-vus', '3'], { cwd });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /"rate": 7,\s+"timeUnit": "1000ms",\s+"duration": "3000ms",\s+"preAllocatedVUs": 1,\s+"maxVUs": 3/);
    const bad = await cli(['export', 'k6', path.join(FIX, 'flow.lua'), '--base-url', server.url, '--rate', 'fast'], { cwd });
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--rate/);
  });

  test('a Postman collection exports through the same translation', async () => {
    const r = await cli(['export', 'k6', path.join(REPO_ROOT, 'fixtures', 'postman', 'mock-app.postman_collection.json'), '--base-url', server.url], { cwd });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /http\.request\("GET", `\$\{base\}\/healthz`, null, \{ tags: \{ name: "health check" \} \}\)/);
    assert.match(r.stdout, /check\(null, \{ "status is ok": \(\) => \(__json\(r1, \["status"\]\) === "ok"\) \}\)/);
  });
});

describe('topas import (CLI)', () => {
  test('har: order, think times, static assets and other hosts left out, a token carried into a later request', async () => {
    const file = har([
      { t: 0, method: 'POST', url: 'http://shop.test:8080/login', body: '{"user":"alice"}', response: '{"token":"tok-xyz-123456","user":{"id":"u-42"}}', time: 50 },
      { t: 20, method: 'GET', url: 'http://shop.test:8080/static/app.css', mime: 'text/css', response: 'body{}' },
      { t: 30, method: 'GET', url: 'https://cdn.other.test/lib.js', mime: 'application/javascript' },
      { t: 40, method: 'GET', url: 'https://metrics.other.test/collect?x=1' },
      { t: 1050, method: 'GET', url: 'http://shop.test:8080/api/orders?user=u-42', headers: { Authorization: 'Bearer tok-xyz-123456', 'User-Agent': 'x', Accept: 'application/json' } },
    ]);
    const out = path.join(cwd, 'shop.lua');
    const r = await cli(['import', 'har', file, '-o', out], { cwd });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /static asset: GET http:\/\/shop\.test:8080\/static\/app\.css/);
    assert.match(r.stderr, /static asset: GET https:\/\/cdn\.other\.test\/lib\.js/);
    assert.match(r.stderr, /other host: GET https:\/\/metrics\.other\.test\/collect/);
    const src = fs.readFileSync(out, 'utf8');
    assert.match(src, /local base = env\("BASE_URL", "http:\/\/shop\.test:8080"\)/);
    assert.match(src, /local r1 = net\.post\(base \.\. "\/login", \{ user = "alice" \}, \{ name = "POST \/login" \}\)/);
    assert.match(src, /local token = r1:json\(\)\.token/);
    assert.match(src, /local id = r1:json\(\)\.user\.id/);
    assert.match(src, /sleep\("1000ms"\)/);
    assert.match(src, /net\.get\(base \.\. "\/api\/orders\?user=" \.\. id, \{ headers = \{ \["authorization"\] = "Bearer " \.\. token, \["accept"\] = "application\/json" \}, name = "GET \/api\/orders" \}\)/);
    assert.doesNotMatch(src, /user-agent/i);
    // --include-host keeps another host (its own BASE_URL_2)
    const both = await cli(['import', 'har', file, '--include-host', 'shop.test:8080', '--include-host', 'metrics.other.test'], { cwd });
    assert.equal(both.code, 0, both.stderr);
    assert.match(both.stdout, /local base_2 = env\("BASE_URL_2", "https:\/\/metrics\.other\.test"\)/);
    // the scenario runs, and the carried token reaches the server
    const before = server.requests.length;
    const load = await cli(['load', out, '--rate', '2/s', '--duration', '1s', '--env', `BASE_URL=${server.url}`], { cwd });
    assert.equal(load.code, 0, load.stderr);
    const orders = server.requests.slice(before).filter((q) => q.url.startsWith('/api/orders'));
    assert.ok(orders.length >= 1);
    assert.equal(orders[0].headers.authorization, 'Bearer tok-xyz-123456');
    assert.equal(orders[0].url, '/api/orders?user=u-42');
  });

  test('postman: a folder with its tests as checks, runnable with topas load', async () => {
    const out = path.join(cwd, 'health.lua');
    const r = await cli(['import', 'postman', path.join(REPO_ROOT, 'fixtures', 'postman', 'mock-app.postman_collection.json'), '--folder', 'health', '-o', out], { cwd });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /version: test "has a version" not translated/);
    const src = fs.readFileSync(out, 'utf8');
    assert.match(src, /check\("status is ok", r1:json\(\)\.status == "ok"\)/);
    const load = await cli(['load', out, '--rate', '2/s', '--duration', '1s', '--env', `BASE_URL=${server.url}`, '--json'], { cwd });
    assert.equal(load.code, 0, load.stderr);
    const s = JSON.parse(load.stdout) as { thresholds: Array<{ key: string; ok: boolean; observed: number }> };
    // (Lua table order: the thresholds come in any order)
    assert.deepEqual(s.thresholds.map((t) => [t.key, t.ok]).sort(), [['checks', true], ['http_req_failed', true]]);
  });

  test('not a HAR file: invalid input', async () => {
    const f = path.join(cwd, 'x.har');
    fs.writeFileSync(f, '{"nope":1}');
    const r = await cli(['import', 'har', f], { cwd });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /not a HAR file/);
  });
});
