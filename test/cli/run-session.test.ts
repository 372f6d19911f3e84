import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { cli, REPO_ROOT } from '../helpers/cli';
import { startHttpServer, type TestHttpServer } from '../helpers/http-server';
import { readHookEvents, writeLifecycleReporter, type HookEvent } from '../helpers/lifecycle-reporter';

/**
 * What `topas run` and `topas load` share (src/run/run-session.ts): the
 * reporters' lifecycle hooks in order, the `summary` reporter, and a run
 * record that holds what a report needs (spec with secrets masked, SUT
 * changes, shaping changes). A scratch app: one tiny HTTP service, local backend.
 */
const SECRET = 'hunter2-s3cr3t-token';
let dir: string;
let server: TestHttpServer;

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-run-session-'));
  server = await startHttpServer((_req, res) => res.end('ok'));
  fs.writeFileSync(path.join(dir, 'server.js'), "require('node:http').createServer((q, s) => s.end('ok')).listen(Number(process.env.PORT), '127.0.0.1');\n");
  fs.writeFileSync(
    path.join(dir, 'topas.yaml'),
    `name: sessionapp\nservices:\n  - name: web\n    version: "2.0.0"\n    command: ["node", "server.js"]\n    port: 8080\n    env:\n      API_TOKEN: "${SECRET}"\n    ready: { http: / }\n`,
  );
  fs.writeFileSync(
    path.join(dir, 'changes.lua'),
    [
      'local sut = require("sut")',
      'local shape = require("shape")',
      'step("upgrade", function() sut.apply_service("web", { version = "2.1.0" }) end)',
      'step("shape", function()',
      '  shape.latency("web", "5ms")',
      '  shape.reset("web")',
      'end)',
      'step("fails", function() expect(1):to_be(2) end)',
      '',
    ].join('\n'),
  );
  fs.writeFileSync(
    path.join(dir, 'load.lua'),
    [
      'local net = require("net")',
      'local sut = require("sut")',
      'local shape = require("shape")',
      'options = { rate = 10, duration = "2s" }',
      'function iteration(ctx)',
      '  if ctx.iteration == 5 then',
      '    sut.apply_service("web", { version = "2.1.0" })',
      '    shape.latency("web", "1ms")',
      '    return',
      '  end',
      '  local r = net.get("http://web/")',
      '  check("ok", r.code == 200)',
      'end',
      '',
    ].join('\n'),
  );
  writeLifecycleReporter(dir);
});

after(async () => {
  await server.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

function readEvents(): HookEvent[] {
  return readHookEvents(dir);
}

function readRecord(id: string): { text: string; json: Record<string, any> } {
  const text = fs.readFileSync(path.join(dir, '.topas', 'runs', id, 'run.json'), 'utf8');
  return { text, json: JSON.parse(text) };
}

function runIdOf(events: HookEvent[]): string {
  return String(events[0].v.runId);
}

describe('one run session for run and load', () => {
  test('topas run: hooks in order, and the record holds the masked spec, the SUT changes and the shaping changes', async () => {
    const r = await cli(['run', 'changes.lua', '--backend', 'local', '--reporter', './lifecycle.js'], { cwd: dir });
    assert.equal(r.code, 1, r.stderr);
    const events = readEvents();
    assert.deepEqual(
      events.map((e) => [e.hook, e.v.kind ?? e.v.name, e.v.state].filter((x) => x !== undefined)),
      [
        ['runStart', 'run'],
        ['stepEnd', 'upgrade', 'passed'],
        ['stepEnd', 'shape', 'passed'],
        ['stepEnd', 'fails', 'failed'],
        ['scenarioEnd', 'changes.lua', 'failed'],
        ['runEnd', 'failed'],
      ],
    );
    const { text, json } = readRecord(runIdOf(events));
    assert.equal(json.schemaVersion, 1);
    assert.equal(json.exitCode, 1);
    assert.doesNotMatch(text, new RegExp(SECRET));
    assert.equal(json.spec.services[0].env.API_TOKEN, '***');
    assert.deepEqual(
      json.sutChanges.map((c: { text: string }) => c.text),
      ['sut.applyService(web, {"version":"2.1.0"})', 'sut.applyService done'],
    );
    assert.ok(json.sutChanges.every((c: { ts: number }) => typeof c.ts === 'number'));
    assert.ok(json.shaping.length >= 2, JSON.stringify(json.shaping));
    assert.match(JSON.stringify(json.shaping), /latency/);
    assert.equal(json.sut.find((s: { name: string }) => s.name === 'web').version, '2.1.0');
  });

  test('topas load: hooks in order, the summary reporter on stdout, the record, and test status shows the verdict', async () => {
    // a reporter without a file takes stdout, as on `topas run`: the summary is asked for with it
    const r = await cli(['load', 'load.lua', '--backend', 'local', '--threshold', 'http_reqs:count>0', '--workers', '1', '--reporter', './lifecycle.js', '--reporter', 'summary'], { cwd: dir });
    assert.equal(r.code, 0, r.stderr);
    const events = readEvents();
    const id = runIdOf(events);
    assert.deepEqual(events[0], { hook: 'runStart', v: { runId: id, kind: 'load', app: 'sessionapp' } });
    assert.deepEqual(events[events.length - 1], { hook: 'runEnd', v: { state: 'passed', kind: 'load' } });
    const seconds = events.filter((e) => e.hook === 'loadSecond').map((e) => e.v);
    assert.deepEqual(seconds.slice(0, 2).map((p) => p.t), [0, 1], JSON.stringify(events));
    assert.ok(seconds.every((p) => p.targetRate === 10));
    assert.equal(events.length, seconds.length + 2, 'loadSecond only between runStart and runEnd');
    // the summary reporter is what stdout shows, and `topas report --format summary` renders the same from the record
    assert.match(r.stdout, /http_reqs/);
    assert.match(r.stdout, new RegExp(`^run ${id}: passed$`, 'm'));
    const again = await cli(['report', id, '--format', 'summary'], { cwd: dir });
    assert.equal(again.code, 0, again.stderr);
    assert.equal(again.stdout, r.stdout);
    const { text, json } = readRecord(id);
    assert.doesNotMatch(text, new RegExp(SECRET));
    assert.equal(json.spec.services[0].env.API_TOKEN, '***');
    assert.deepEqual(
      json.sutChanges.map((c: { text: string }) => c.text),
      ['sut.applyService(web, {"version":"2.1.0"})', 'sut.applyService done'],
    );
    assert.match(JSON.stringify(json.shaping), /latency/);
    const markers = json.load.timeSeries.markers.map((m: { text: string }) => m.text);
    assert.ok(markers.includes('sut.applyService(web, {"version":"2.1.0"})'), JSON.stringify(markers));
    assert.ok(markers.some((m: string) => m.startsWith('shape web: ')), JSON.stringify(markers));
    const status = await cli(['test', 'status', id, '--json'], { cwd: dir });
    assert.equal(status.code, 0, status.stderr);
    assert.match(JSON.parse(status.stdout).result, /^passed: load, 1\/1 threshold\(s\) passed, 20 iteration\(s\) at 10\.0\/s, 19 request\(s\), p95 [\d.]+ms$/);
  });
});

describe('the summary reporter', () => {
  const fixed = path.join(REPO_ROOT, 'fixtures', 'load', 'no-app', 'fixed.lua');
  const env = () => ({ ...process.env, TARGET: `${server.url}/fixed` });

  test('--reporter works on load as on run: a reporter on stdout replaces the summary, one with a file adds to it', async () => {
    const table = await cli(['load', fixed, '--rate', '10/s', '--duration', '1s', '--reporter', 'table', '--reporter', 'summary:out/summary.txt'], { cwd: dir, env: env() });
    assert.equal(table.code, 0, table.stderr);
    const id = /^run (\S+)/m.exec(table.stdout)![1];
    // the table reporter's view of a load run, not the summary
    assert.match(table.stdout, /load passed \(exit 0\)/);
    assert.doesNotMatch(table.stdout, new RegExp(`^run ${id}: passed$`, 'm'));
    const file = fs.readFileSync(path.join(dir, 'out', 'summary.txt'), 'utf8');
    assert.match(file, /http_req_duration/);
    assert.match(file, new RegExp(`^run ${id}: passed$`, 'm'));
  });

  test('--json: the summary as JSON on stdout; other reporters need a file', async () => {
    const r = await cli(['load', fixed, '--rate', '10/s', '--duration', '1s', '--json', '--reporter', 'summary:out/s.txt'], { cwd: dir, env: env() });
    assert.equal(r.code, 0, r.stderr);
    const summary = JSON.parse(r.stdout);
    assert.equal(summary.state, 'passed');
    assert.equal(summary.exitCode, 0);
    assert.equal(summary.executor.executor, 'constant-arrival-rate');
    assert.equal(summary.metrics.iterations.values.count, 10);
    assert.deepEqual(summary.thresholds, []);
    assert.match(fs.readFileSync(path.join(dir, 'out', 's.txt'), 'utf8'), new RegExp(`^run ${summary.runId}: passed$`, 'm'));
    const refused = await cli(['load', fixed, '--json', '--reporter', 'summary'], { cwd: dir, env: env() });
    assert.equal(refused.code, 2, refused.stderr);
    assert.match(refused.stderr, /give each reporter a file/);
  });

  test('on a scenario run the summary is the table', async () => {
    const plain = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-summary-run-'));
    try {
      fs.copyFileSync(path.join(REPO_ROOT, 'fixtures', 'cli', 'no-app', 'pass.lua'), path.join(plain, 'pass.lua'));
      const r = await cli(['run', 'pass.lua', '--reporter', 'summary'], { cwd: plain });
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^run \S+/);
      assert.match(r.stdout, /✓ +│ pass\.lua/);
    } finally {
      fs.rmSync(plain, { recursive: true, force: true });
    }
  });
});
