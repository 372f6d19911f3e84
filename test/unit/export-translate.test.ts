import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import YAML from 'yaml';
import { captureIo, REPO_ROOT } from '../helpers/cli';
import { runExport, type ExportOptions } from '../../src/export/export-service';
import { parseLua } from '../../src/export/lua-ast';
import { buildFlowModel } from '../../src/export/flow-builder';
import { TopasError } from '../../src/errors';

const FIX = path.join(REPO_ROOT, 'fixtures', 'export');

async function exportText(file: string, opts: Partial<ExportOptions> = {}): Promise<{ text: string; stderr: string; files: string[] }> {
  const cap = captureIo();
  const r = await runExport({ io: cap.io, target: 'k6', file, allowPartial: false, flags: {}, baseUrl: 'http://127.0.0.1:8080', ...opts });
  return { text: cap.stdout, stderr: cap.stderr, files: r.files };
}

/** The `options` object of a k6 script, evaluated. */
function k6Options(text: string): Record<string, any> {
  const m = /export const options = (\{[\s\S]*?\n\});/.exec(text);
  assert.ok(m, text);
  return JSON.parse(m![1]);
}

function model(src: string) {
  const { chunk, problems } = parseLua(src, 'x.lua');
  assert.deepEqual(problems, []);
  return buildFlowModel(chunk!);
}

describe('export: the Lua syntax tree', () => {
  test('luaparse reads Lua 5.3 syntax and 5.4 <const> attributes (blanked, columns kept)', () => {
    const m = model('local net = require("net")\nlocal n <const> = 7 // 2\nfunction iteration()\n  local r = net.get("http://h.example/x")\nend\n');
    assert.equal(m.flow.length, 1);
    assert.equal(m.flow[0].k, 'request');
    assert.equal((m.flow[0] as { line: number }).line, 4);
  });

  test('a syntax error is reported with file:line', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-export-'));
    fs.writeFileSync(path.join(dir, 'bad.lua'), 'function iteration()\n  local x = = 1\nend\n');
    await assert.rejects(exportText(path.join(dir, 'bad.lua')), (e: TopasError) => e.code === 'LUA_SYNTAX' && e.exitCode === 2 && /bad\.lua:2/.test(e.problems[0].path));
  });

  test('requests, checks, carried values, if, for and sleep become the flow', () => {
    const m = model(fs.readFileSync(path.join(FIX, 'flow.lua'), 'utf8'));
    assert.deepEqual(m.skipped, []);
    const kinds = m.flow.map((s) => s.k);
    assert.deepEqual(kinds, ['request', 'check', 'check', 'local', 'request', 'check', 'if', 'for', 'sleep']);
    assert.deepEqual(m.flow[3], { k: 'local', line: 22, name: 'service', value: { k: 'json', resp: 'r', path: ['service'] } });
  });
});

describe('export k6', () => {
  test('options, thresholds and flags: the plan topas load would run', async () => {
    const { text } = await exportText(path.join(FIX, 'flow.lua'));
    const o = k6Options(text);
    assert.deepEqual(o.scenarios.default, { executor: 'constant-arrival-rate', rate: 20, timeUnit: '1000ms', duration: '2000ms', preAllocatedVUs: 2, maxVUs: 20 });
    assert.deepEqual(o.thresholds, { http_req_duration: ['p(95)<2000'], http_req_failed: ['rate<0.01'], checks: ['rate>0.99'] });
    const flagged = k6Options((await exportText(path.join(FIX, 'flow.lua'), { flags: { rate: '50/s', ramp: '1s', duration: '3s', threshold: ['http_req_duration:p(99)<300'] } })).text);
    assert.deepEqual(flagged.scenarios.default.stages, [
      { target: 50, duration: '1000ms' },
      { target: 50, duration: '2000ms' },
    ]);
    assert.equal(flagged.scenarios.default.executor, 'ramping-arrival-rate');
    assert.deepEqual(flagged.thresholds.http_req_duration, ['p(99)<300']);
  });

  test('the flow: names, JSON bodies, query, headers from a carried value, checks, --base-url', async () => {
    const { text } = await exportText(path.join(FIX, 'flow.lua'));
    assert.match(text, /const base = \(__ENV\["BASE_URL"\] \?\? "http:\/\/127\.0\.0\.1:8080"\);/);
    assert.match(text, /let r = http\.request\("GET", `\$\{base\}\/fixed`, null, \{ tags: \{ name: "fixed" \} \}\);/);
    assert.match(text, /check\(null, \{ "fixed says ok": \(\) => \(__json\(r, \["ok"\]\) === true\) \}\);/);
    assert.match(text, /headers: \{ "x-from": service \}/);
    assert.match(text, /__query\(`\$\{base\}\/slow`, \{ "ms": 5, "who": service \}\)/);
    assert.match(text, /for \(let i = 1; i <= 2; i\+\+\) \{/);
    assert.match(text, /JSON\.stringify\(\{ "n": i, "service": service \}\)/);
    assert.match(text, /sleep\(0\.1\);/);
  });

  test('a service named in a URL needs --base-url', async () => {
    await assert.rejects(exportText(path.join(FIX, 'flow.lua'), { baseUrl: undefined }), (e: TopasError) => e.code === 'INVALID_FLAGS' && /flow\.lua:5/.test(e.problems[0].path) && /--base-url/.test(e.hint ?? ''));
  });

  test('db, sut and grpc calls: listed with file:line, exit 2 unless --allow-partial', async () => {
    const file = path.join(FIX, 'partial.lua');
    await assert.rejects(exportText(file), (e: TopasError) => {
      assert.equal(e.code, 'UNTRANSLATABLE');
      assert.equal(e.exitCode, 2);
      assert.deepEqual(
        e.problems.map((p) => p.path.replace(/^.*fixtures\//, '')),
        ['export/partial.lua:10', 'export/partial.lua:11', 'export/partial.lua:12', 'export/partial.lua:15'],
      );
      assert.match(e.problems[0].message, /db\.connect\(\): db \(SQL state\)/);
      assert.match(e.problems[2].message, /sut\.restart\(\)/);
      assert.match(e.problems[3].message, /gRPC/);
      return true;
    });
    const { text, stderr } = await exportText(file, { allowPartial: true });
    assert.match(stderr, /left out of the k6 script[\s\S]*partial\.lua:10: db\.connect/);
    assert.match(text, /\/\/ left out \(no k6 equivalent\):\n\/\/ {3}\S*partial\.lua:10/);
    assert.match(text, /http\.request\("GET", "http:\/\/127\.0\.0\.1:8080\/fixed"/);
    assert.doesNotMatch(text.split("import http")[1], /restart|grpc|db\./);
  });
});

describe('export locust and artillery', () => {
  test('locust: a Python file that compiles, with the shape, thresholds and checks', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-export-'));
    const out = path.join(dir, 'locustfile.py');
    await exportText(path.join(FIX, 'flow.lua'), { target: 'locust', out });
    const text = fs.readFileSync(out, 'utf8');
    assert.match(text, /SEGMENTS = \[\[0,2,20,20\]\]/);
    assert.match(text, /\("http_req_duration: p\(95\)<2000", lambda env: env\.stats\.total\.get_response_time_percentile\(0\.95\), "<", 2000\)/);
    assert.match(text, /\("http_req_failed: rate<0\.01", lambda env: env\.stats\.total\.fail_ratio, "<", 0\.01\)/);
    assert.match(text, /check\("fixed is 200", lambda: \(r\.status_code == 200\)\)/);
    const py = spawnSync('python3', ['-m', 'py_compile', out], { encoding: 'utf8' });
    assert.equal(py.status, 0, py.stderr);
  });

  test('artillery: phases, ensure conditions, named requests and a processor beside the script', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-export-'));
    const out = path.join(dir, 'load.yml');
    const r = await exportText(path.join(FIX, 'flow.lua'), { target: 'artillery', out });
    assert.deepEqual(r.files.map((f) => path.basename(f)), ['load.yml', 'load.processor.js']);
    const doc = YAML.parse(fs.readFileSync(out, 'utf8'));
    assert.deepEqual(doc.config.phases, [{ duration: 2, arrivalRate: 20, maxVusers: 20 }]);
    assert.deepEqual(
      doc.config.ensure.conditions.map((c: { expression: string }) => c.expression),
      ['http.response_time.p95 < 2000', '(topas.http_req_failed / topas.http_reqs) < 0.01', '(topas.checks.pass / (topas.checks.pass + topas.checks.fail)) > 0.99'],
    );
    const names = JSON.stringify(doc.scenarios[0].flow).match(/"name":"[^"]+"/g);
    assert.deepEqual(names, ['"name":"fixed"', '"name":"version"', '"name":"slow"', '"name":"post slow"']);
    const proc = require(path.join(dir, 'load.processor.js'));
    assert.equal(typeof proc.t_start, 'function');
    // a carried value: the response's JSON field lands in context.vars
    const vars: Record<string, unknown> = {};
    const emitted: string[] = [];
    const events = { emit: (_t: string, name: string, n: number) => emitted.push(`${name}=${n}`) };
    const fns = Object.keys(proc);
    const respFn = fns.find((f) => f.startsWith('t_resp_'))!;
    proc[respFn]({}, { statusCode: 200, body: '{"ok":true,"service":"mock-app"}', headers: {} }, { vars }, events, () => undefined);
    assert.deepEqual((vars.r as { status: number }).status, 200);
    assert.ok(emitted.includes('topas.http_req_failed=0'));
  });

  test('a threshold a target cannot express is left out like any other item', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-export-'));
    await assert.rejects(
      exportText(path.join(FIX, 'flow.lua'), { target: 'artillery', out: path.join(dir, 'a.yml'), flags: { threshold: ['dropped_iterations:count<1'] } }),
      (e: TopasError) => e.code === 'UNTRANSLATABLE' && /flow\.lua:7/.test(e.problems[0].path) && /dropped_iterations/.test(e.problems[0].message),
    );
  });
});
