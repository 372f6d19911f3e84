import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { REPO_ROOT, captureIo, cli } from '../helpers/cli';
import { runCli } from '../../src/cli/main';
import { startHttpServer, type TestHttpServer } from '../helpers/http-server';

// issue 19, CLI gaps of `topas load`: VU figures, --metrics-port, --baseline
let server: TestHttpServer;
let dir: string;

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-load-gaps-'));
  server = await startHttpServer((req, res) => {
    if (req.url?.startsWith('/broken')) res.writeHead(500).end('no');
    else setTimeout(() => res.end('ok'), 3);
  });
  fs.writeFileSync(
    path.join(dir, 'two-names.lua'),
    ['local net = require("net")', 'function iteration()', '  net.get(env("TARGET") .. "/hello", { name = "hello" })', '  net.get(env("TARGET") .. "/broken", { name = "broken" })', 'end', ''].join('\n'),
  );
  fs.writeFileSync(path.join(dir, 'one.lua'), ['local net = require("net")', 'function iteration()', '  net.get(env("TARGET") .. "/hello")', 'end', ''].join('\n'));
});

after(async () => {
  await server.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const env = () => ({ ...process.env, TARGET: server.url, NO_COLOR: '1' });

describe('topas load: CLI gaps', () => {
  test('vus counts the VUs in use at 200/s, and the live view and the summary agree on vus_max', async () => {
    const r = await cli(['load', 'one.lua', '--rate', '200/s', '--duration', '3s', '--json'], { cwd: dir, env: env() });
    assert.equal(r.code, 0, r.stderr);
    const s = JSON.parse(r.stdout);
    assert.ok(s.metrics.iterations.values.count >= 550, JSON.stringify(s.metrics.iterations));
    assert.ok(s.metrics.vus.values.max >= 1, `vus max ${JSON.stringify(s.metrics.vus.values)}`);
    const vusMax = s.metrics.vus_max.values.value;
    assert.ok(vusMax >= 1);
    const lastLive = [...r.stderr.matchAll(/vus (\d+)\/(\d+)/g)].pop();
    assert.ok(lastLive, r.stderr);
    assert.equal(Number(lastLive[2]), vusMax, `live view ${lastLive[0]} vs vus_max ${vusMax}`);
  });

  test('--metrics-port serves live request metrics per name beside the run metrics', async () => {
    const cap = captureIo({ cwd: dir, env: env() });
    let body = '';
    const scrape = (async () => {
      for (let i = 0; i < 200; i++) {
        const m = cap.stderr.match(/metrics on http:\/\/127\.0\.0\.1:(\d+)\/metrics/);
        if (m && /load: /.test(cap.stderr)) {
          await new Promise((res) => setTimeout(res, 1800));
          body = await (await fetch(`http://127.0.0.1:${m[1]}/metrics`)).text();
          return;
        }
        await new Promise((res) => setTimeout(res, 50));
      }
    })();
    const code = await runCli(['load', 'two-names.lua', '--rate', '50/s', '--duration', '3s', '--metrics-port', '0'], cap.io);
    await scrape;
    assert.equal(code, 0, cap.stderr);
    assert.match(body, /topas_queue_depth/, 'the run metrics are there too');
    const count = (re: RegExp) => Number(body.match(re)?.[1]);
    assert.ok(count(/^topas_load_requests_total\{name="hello"\} (\d+)/m) > 10, body);
    assert.equal(count(/^topas_load_request_errors_total\{name="hello"\} (\d+)/m), 0, body);
    assert.ok(count(/^topas_load_request_errors_total\{name="broken"\} (\d+)/m) > 10, body);
    assert.equal(count(/^topas_load_request_errors_total\{name="broken"\} (\d+)/m), count(/^topas_load_requests_total\{name="broken"\} (\d+)/m));
    assert.match(body, /^topas_load_request_duration_seconds_bucket\{name="hello",le="0\.001"\} \d+/m);
    const inf = count(/^topas_load_request_duration_seconds_bucket\{name="hello",le="\+Inf"\} (\d+)/m);
    assert.equal(inf, count(/^topas_load_request_duration_seconds_count\{name="hello"\} (\d+)/m));
    // the 3 ms answers: none under 1 ms, all under 100 ms
    assert.equal(count(/^topas_load_request_duration_seconds_bucket\{name="hello",le="0\.001"\} (\d+)/m), 0, body);
    assert.equal(count(/^topas_load_request_duration_seconds_bucket\{name="hello",le="0\.1"\} (\d+)/m), inf, body);
    assert.ok(count(/^topas_load_requests_per_second (\d+)/m) > 50, body);
  });
});

describe('topas load --baseline, local backend', () => {
  test('compares the load phase only: the SUT start-up does not dilute the baseline rate', async () => {
    const app = path.join(REPO_ROOT, 'fixtures/cli/gaps');
    const args = ['load', 'load/hit.lua', '--rate', '20/s', '--duration', '2s', '--backend', 'local', '--json'];
    const first = await cli(args, { cwd: app, env: env() });
    assert.equal(first.code, 0, first.stderr);
    const id = JSON.parse(first.stdout).runId;
    try {
      // about the rate only: latencies of a few ms drift by tens of percent between two runs
      const second = await cli([...args, '--baseline', id, '--max-regression', '1000%'], { cwd: app, env: env() });
      assert.equal(second.code, 0, second.stderr + second.stdout);
      const b = JSON.parse(second.stdout).baseline;
      const row = b.rows.find((x: { metric: string; stat: string }) => x.metric === 'http_reqs' && x.stat === 'rate');
      assert.ok(row.baseline > 17 && row.baseline < 23, `baseline rate ${row.baseline}/s (current ${row.current}/s)`);
      assert.ok(Math.abs(row.deltaRatio) < 0.15, JSON.stringify(row));
      fs.rmSync(path.join(app, '.topas', 'runs', JSON.parse(second.stdout).runId), { recursive: true, force: true });
    } finally {
      fs.rmSync(path.join(app, '.topas', 'runs', id), { recursive: true, force: true });
    }
  });
});
