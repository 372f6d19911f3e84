import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { cli, REPO_ROOT } from '../helpers/cli';
import { startHarRecorder } from '../helpers/har-recorder';

/**
 * Each exported script runs with the real tool against the fixture app, and
 * the tool's own summary must show the topas run's requests, check names and
 * threshold verdicts. Peers come from scripts/install-peers.sh (into .tools/);
 * a missing one fails the test with the command that installs it.
 */
const FIX = path.join(REPO_ROOT, 'fixtures', 'export');
const INSTALL = 'scripts/install-peers.sh --only k6,locust,artillery';
let app: ChildProcess;
let appUrl: string;
let work: string;

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

function peer(name: string): string {
  const bin = path.join(REPO_ROOT, '.tools', 'bin', name);
  if (!fs.existsSync(bin)) assert.fail(`${name} is not installed in .tools/bin: run ${INSTALL}`);
  return bin;
}

function run(cmd: string, args: string[], opts: { cwd: string; env?: NodeJS.ProcessEnv; timeoutMs?: number }): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: { ...process.env, NO_COLOR: '1', ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout!.on('data', (d) => (out += d));
    child.stderr!.on('data', (d) => (out += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

interface TopasRun {
  code: number;
  names: string[];
  verdicts: Record<string, boolean>;
}

async function topasLoad(file: string): Promise<TopasRun> {
  const r = await cli(['load', file, '--json', '--workers', '1'], { cwd: work, env: { ...process.env, BASE_URL: appUrl } });
  const summary = JSON.parse(r.stdout) as { metrics: Record<string, unknown>; thresholds: Array<{ key: string; expression: string; ok: boolean }> };
  const names = Object.keys(summary.metrics)
    .map((k) => /^http_reqs\{name:(.*)\}$/.exec(k)?.[1])
    .filter((n): n is string => !!n)
    .sort();
  // the summary breaks requests down by name only when there is more than one
  if (!names.length && (summary.metrics as Record<string, unknown>).http_reqs) names.push(...(SINGLE_NAME[path.basename(file)] ?? []));
  const verdicts: Record<string, boolean> = {};
  for (const t of summary.thresholds) verdicts[`${t.key}: ${t.expression}`] = t.ok;
  return { code: r.code, names, verdicts };
}

async function exportTo(target: string, file: string, out: string): Promise<void> {
  const r = await cli(['export', target, file, '--base-url', appUrl, '-o', out], { cwd: work });
  assert.equal(r.code, 0, r.stderr);
}

const SINGLE_NAME: Record<string, string[]> = { 'slow.lua': ['slow'] };
const CHECKS: Record<string, string[]> = { 'flow.lua': ['fixed is 200', 'fixed says ok', 'version is 1.0.0'], 'slow.lua': ['slow is 200'] };

before(async () => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-export-peers-'));
  const [port, grpcPort] = [await freePort(), await freePort()];
  app = spawn(process.execPath, [path.join(REPO_ROOT, 'fixtures', 'apps', 'mock-app', 'server.js')], { env: { ...process.env, PORT: String(port), PORT_GRPC: String(grpcPort) }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  app.stdout!.on('data', (d) => (out += d));
  app.stderr!.on('data', (d) => (out += d));
  const deadline = Date.now() + 20_000;
  while (!/grpc listening/.test(out)) {
    if (Date.now() > deadline || app.exitCode !== null) throw new Error(`mock-app did not start: ${out}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  appUrl = `http://127.0.0.1:${port}`;
});

after(async () => {
  app.kill('SIGTERM');
  await new Promise((r) => app.once('exit', r));
  fs.rmSync(work, { recursive: true, force: true });
});

const topasRuns = new Map<string, Promise<TopasRun>>();
function topasOnce(name: string): Promise<TopasRun> {
  if (!topasRuns.has(name)) topasRuns.set(name, topasLoad(path.join(FIX, name)));
  return topasRuns.get(name)!;
}

describe('topas run: the reference', () => {
  test('flow.lua passes, slow.lua fails its p(95) threshold only', async () => {
    const flow = await topasOnce('flow.lua');
    assert.equal(flow.code, 0);
    assert.deepEqual(flow.names, ['fixed', 'post slow', 'slow', 'version']);
    const slow = await topasOnce('slow.lua');
    assert.equal(slow.code, 4);
    assert.deepEqual(slow.verdicts, { 'http_req_duration: p(95)<5': false, 'http_req_failed: rate<0.01': true, 'checks: rate>0.99': true });
  });
});

describe('k6', () => {
  for (const name of ['flow.lua', 'slow.lua']) {
    test(`${name}: same requests, check names and threshold verdicts`, async () => {
      const k6 = peer('k6');
      const ref = await topasOnce(name);
      const script = path.join(work, `${name}.k6.js`);
      await exportTo('k6', path.join(FIX, name), script);
      const samples = path.join(work, `${name}.k6.ndjson`);
      const r = await run(k6, ['run', '--no-usage-report', '--out', `json=${samples}`, script], { cwd: work, env: { BASE_URL: appUrl } });
      // k6 exits 99 when a threshold fails
      assert.equal(r.code === 0, ref.code === 0, r.out);
      if (ref.code !== 0) assert.equal(r.code, 99, r.out);
      const names = new Set<string>();
      for (const line of fs.readFileSync(samples, 'utf8').split('\n')) {
        if (!line.includes('"metric":"http_reqs"') || !line.includes('"type":"Point"')) continue;
        names.add(JSON.parse(line).data.tags.name);
      }
      assert.deepEqual([...names].sort(), ref.names);
      for (const c of CHECKS[name]) assert.match(r.out, new RegExp(`✓ ${c}`), r.out);
      for (const [key, ok] of Object.entries(ref.verdicts)) {
        const expr = key.split(': ')[1];
        const line = r.out.split('\n').find((l) => l.includes(`'${expr}'`));
        assert.ok(line, `threshold ${key} missing from the k6 summary:\n${r.out}`);
        assert.equal(line!.includes('✓'), ok, `${key}: ${line}`);
      }
    });
  }
});

describe('Locust', () => {
  for (const name of ['flow.lua', 'slow.lua']) {
    test(`${name}: same requests, check names and threshold verdicts`, async () => {
      const locust = peer('locust');
      const ref = await topasOnce(name);
      const script = path.join(work, `${name.replace('.lua', '')}_locustfile.py`);
      await exportTo('locust', path.join(FIX, name), script);
      const r = await run(locust, ['-f', script, '--headless', '--only-summary', '--loglevel', 'WARNING'], { cwd: work, env: { BASE_URL: appUrl } });
      assert.equal(r.code, ref.code === 0 ? 0 : 4, r.out);
      for (const n of ref.names) assert.match(r.out, new RegExp(`^(GET|POST)\\s+${n}\\s+\\d+`, 'm'), r.out);
      const table = r.out.split('\n').filter((l) => /^(GET|POST|PUT|DELETE|PATCH|HEAD)\s/.test(l));
      assert.deepEqual([...new Set(table.map((l) => l.replace(/^\S+\s+/, '').split(/\s{2,}/)[0]))].sort(), ref.names);
      for (const c of CHECKS[name]) assert.match(r.out, new RegExp(`PASS ${c}: \\d+ passed, 0 failed`), r.out);
      for (const [key, ok] of Object.entries(ref.verdicts)) assert.match(r.out, new RegExp(`${ok ? 'PASS' : 'FAIL'} ${key.replace(/[()<>.]/g, '\\$&')} \\(observed`), r.out);
    });
  }
});

describe('Artillery', () => {
  for (const name of ['flow.lua', 'slow.lua']) {
    test(`${name}: same requests, check names and threshold verdicts`, async () => {
      const artillery = peer('artillery');
      const ref = await topasOnce(name);
      const script = path.join(work, `${name}.artillery.yml`);
      await exportTo('artillery', path.join(FIX, name), script);
      const report = path.join(work, `${name}.artillery.json`);
      const r = await run(artillery, ['run', '--output', report, script], { cwd: work, env: { BASE_URL: appUrl, ARTILLERY_DISABLE_TELEMETRY: 'true' } });
      assert.equal(r.code === 0, ref.code === 0, r.out);
      const agg = (JSON.parse(fs.readFileSync(report, 'utf8')) as { aggregate: { counters: Record<string, number>; summaries: Record<string, unknown> } }).aggregate;
      const names = Object.keys(agg.summaries)
        .map((k) => /^plugins\.metrics-by-endpoint\.response_time\.(.*)$/.exec(k)?.[1])
        .filter((n): n is string => !!n)
        .sort();
      assert.deepEqual(names, ref.names, r.out);
      for (const c of CHECKS[name]) {
        assert.ok(agg.counters[`checks.${c}.pass`] > 0, `check ${c}: ${JSON.stringify(agg.counters)}`);
        assert.equal(agg.counters[`checks.${c}.fail`], undefined);
      }
      for (const [key, ok] of Object.entries(ref.verdicts)) {
        const line = r.out.split('\n').find((l) => /^\s*(ok|fail):/.test(l) && l.includes(ensureOf(key)));
        assert.ok(line, `ensure ${key} missing:\n${r.out}`);
        assert.equal(/^\s*ok:/.test(line!), ok, `${key}: ${line}`);
      }
    });
  }
});

/** the ensure expression the exporter writes for a topas threshold (enough of it to find the line) */
function ensureOf(key: string): string {
  if (key.startsWith('http_req_duration')) return 'http.response_time.p95';
  if (key.startsWith('http_req_failed')) return 'topas.http_req_failed';
  if (key.startsWith('checks')) return 'topas.checks.pass';
  return key;
}

describe('import har', () => {
  test('a HAR recorded from the fixture app imports to a scenario that passes against it', async () => {
    const rec = await startHarRecorder(appUrl);
    try {
      const fixed = (await (await fetch(`${rec.url}/fixed`)).json()) as { service: string };
      await new Promise((r) => setTimeout(r, 200));
      await (await fetch(`${rec.url}/version`)).text();
      await (await fetch(`${rec.url}/slow?ms=1&svc=${fixed.service}`)).text();
      await (await fetch(`${rec.url}/slow?ms=1`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ service: fixed.service, n: 1 }) })).text();
      await (await fetch(`${rec.url}/static/app.js`)).text();
    } finally {
      await rec.close();
    }
    const har = path.join(work, 'session.har');
    fs.writeFileSync(har, JSON.stringify(rec.har()));
    const scenario = path.join(work, 'imported.lua');
    const imp = await cli(['import', 'har', har, '-o', scenario], { cwd: work });
    assert.equal(imp.code, 0, imp.stderr);
    assert.match(imp.stderr, /static asset: GET \S+\/static\/app\.js/);
    const src = fs.readFileSync(scenario, 'utf8');
    // think time from the recording, correlation of the service name
    // the client waited 200 ms between its first two requests (more on a busy machine)
    const think = /local service = r1:json\(\)\.service\n {2}sleep\("(\d+)ms"\)/.exec(src);
    assert.ok(think && Number(think[1]) >= 150 && Number(think[1]) < 5000, src);
    assert.match(src, /local service = r1:json\(\)\.service/);
    assert.match(src, /"\/slow\?ms=1&svc=" \.\. service/);
    assert.match(src, /\{ service = service, n = 1 \}/);
    const load = await cli(['load', scenario, '--rate', '5/s', '--duration', '2s', '--env', `BASE_URL=${appUrl}`, '--json'], { cwd: work });
    assert.equal(load.code, 0, `${load.stderr}\n${src}`);
    const summary = JSON.parse(load.stdout) as { metrics: Record<string, unknown>; thresholds: Array<{ ok: boolean }> };
    assert.ok(summary.thresholds.every((t) => t.ok));
    assert.deepEqual(
      Object.keys(summary.metrics).filter((k) => k.startsWith('http_reqs{')).sort(),
      ['http_reqs{name:GET /fixed}', 'http_reqs{name:GET /slow}', 'http_reqs{name:GET /version}', 'http_reqs{name:POST /slow}'],
    );
  });
});
