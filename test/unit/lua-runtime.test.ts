import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LuaRuntime } from '../../src/lua/engine';
import { checkLuaSyntax } from '../../src/lua/syntax-check';
import type { LogLine, ScenarioEvent, ScenarioResult, ScenarioTask } from '../../src/run/scenario-types';

let dir: string;
let rt: LuaRuntime;
const logs: LogLine[] = [];
const events: Array<{ runId: string; ev: ScenarioEvent }> = [];
let seq = 0;

function write(name: string, source: string): string {
  const file = path.join(dir, name);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, source);
  return file;
}

function task(file: string, over: Partial<ScenarioTask> = {}): ScenarioTask {
  return {
    runId: `run-${++seq}`,
    file,
    baseDir: dir,
    name: path.basename(file),
    timeoutMs: 10_000,
    env: { GREETING: 'hi' },
    instance: { id: 'inst-1', role: 'default', index: 1, count: 1, params: { n: 3 } },
    endpoints: {},
    memoryLimitBytes: 32 << 20,
    continueOnFailure: false,
    ...over,
  };
}

async function runLua(name: string, source: string, over: Partial<ScenarioTask> = {}): Promise<ScenarioResult> {
  return rt.run(task(write(name, source), over));
}

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-lua-'));
  rt = await LuaRuntime.create({
    onLog: (l) => logs.push(l),
    onEvent: (runId, ev) => events.push({ runId, ev }),
    rpc: async () => undefined,
  });
});

after(() => {
  rt.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('expect matchers', () => {
  const passing = [
    'expect(1):to_be(1)',
    'expect("a"):to_be("a")',
    'expect({a={1,2}, b="x"}):to_equal({b="x", a={1,2}})',
    'expect("hello world"):to_contain("o w")',
    'expect({1, {x=2}}):to_contain({x=2})',
    'expect("abc123"):to_match("%d+$")',
    'expect(0):to_be_truthy()',
    'expect(nil):to_be_nil()',
    'expect(5):to_be_greater_than(4)',
    'expect(5):to_be_less_than(6)',
    'expect(1):never():to_be(2)',
    'expect({a=1}):never():to_equal({a=2})',
    'expect(false):never():to_be_truthy()',
  ];
  for (const line of passing) {
    test(`passes: ${line}`, async () => {
      const r = await runLua('pass.lua', line);
      assert.equal(r.state, 'passed', r.error?.message);
    });
  }

  const failing: Array<[string, string]> = [
    ['expect(404):to_be(200)', 'expected 404 to be 200'],
    ['expect({a=1}):to_equal({a=2})', 'expected {a=1} to equal {a=2}'],
    ['expect("abc"):to_contain("x")', 'expected "abc" to contain "x"'],
    ['expect("abc"):to_match("^x")', 'expected "abc" to match "^x"'],
    ['expect(nil):to_be_truthy()', 'expected nil to be truthy'],
    ['expect(1):to_be_nil()', 'expected 1 to be nil'],
    ['expect(3):to_be_greater_than(5)', 'expected 3 to be greater than 5'],
    ['expect(9):to_be_less_than(5)', 'expected 9 to be less than 5'],
    ['expect(2):never():to_be(2)', 'expected 2 not to be 2'],
  ];
  for (const [line, message] of failing) {
    test(`fails: ${line}`, async () => {
      const r = await runLua('fail.lua', `local x = 1\n${line}\n`);
      assert.equal(r.state, 'failed');
      assert.equal(r.error?.message, `fail.lua:2: ${message}`);
      assert.equal(r.error?.location, 'fail.lua:2');
    });
  }
});

describe('errors', () => {
  test('a runtime error names the file and line, with a traceback', async () => {
    const r = await runLua('sub/err.lua', 'local t\nlocal function f()\n  return t.x\nend\nf()\n');
    assert.equal(r.state, 'error');
    assert.equal(r.error?.location, 'sub/err.lua:3');
    assert.match(r.error?.message ?? '', /^sub\/err\.lua:3: attempt to index a nil value/);
    assert.match(r.error?.stack ?? '', /stack traceback:[\s\S]*sub\/err\.lua:5: in main chunk/);
  });

  test('error("x") and errors from JS calls carry the calling line', async () => {
    const a = await runLua('e1.lua', '\n\nerror("boom")\n');
    assert.equal(a.error?.message, 'e1.lua:3: boom');
    const b = await runLua('e2.lua', '\njson.decode("{nope")\n');
    assert.equal(b.state, 'error');
    assert.equal(b.error?.location, 'e2.lua:2');
    assert.match(b.error?.message ?? '', /^e2\.lua:2: json\.decode: /);
  });

  test('a failed assert fails the scenario and counts as a failed check', async () => {
    const r = await runLua('assert.lua', 'assert(1 == 1)\nassert(false, "must hold")\n');
    assert.equal(r.state, 'failed');
    assert.equal(r.error?.message, 'assert.lua:2: must hold');
    assert.deepEqual(r.checks, [{ name: 'must hold', passed: 0, failed: 1 }]);
  });

  test('a syntax error is reported by checkLuaSyntax as file:line', async () => {
    const file = write('dir/bad.lua', 'local a = 1\nif a then\n  print(a)\n');
    const problems = await checkLuaSyntax(file, dir);
    assert.equal(problems.length, 1);
    assert.equal(problems[0].path, 'dir/bad.lua:4');
    assert.match(problems[0].message, /'end' expected/);
    assert.deepEqual(await checkLuaSyntax(write('ok.lua', 'print(1)\n'), dir), []);
  });
});

describe('isolation and limits', () => {
  test('globals of one scenario never leak into another', async () => {
    const a = write('iso-a.lua', 'leaked = 42\nstring.leaked = true\nsleep(0.05)\nexpect(leaked):to_be(42)\n');
    const b = write('iso-b.lua', 'sleep(0.01)\nexpect(leaked):to_be_nil()\nexpect(string.leaked):to_be_nil()\nexpect(_G.leaked):to_be_nil()\n');
    const [ra, rb] = await Promise.all([rt.run(task(a)), rt.run(task(b))]);
    assert.equal(ra.state, 'passed', ra.error?.message);
    assert.equal(rb.state, 'passed', rb.error?.message);
    const again = await runLua('iso-c.lua', 'expect(leaked):to_be_nil()\n');
    assert.equal(again.state, 'passed', again.error?.message);
  });

  test('runs of one file share nothing: globals, instance, module tables and required modules start fresh every run', async () => {
    // one file run again and again: the engine keeps its text once, every run must still start clean
    const file = write(
      'iso-same.lua',
      [
        'expect(seen):to_be_nil()',
        'expect(instance.touched):to_be_nil()',
        'local net = require("net")',
        'expect(net.marker):to_be_nil()',
        'local json2 = require("net")',
        'expect(json2):to_be(net)',
        'expect(string.marker):to_be_nil()',
        'seen = true',
        'instance.touched = true',
        'net.marker = instance.id',
        'net.get = nil',
        'string.marker = 1',
        'setmetatable(_G, { __index = function() return "from-meta" end })',
        '',
      ].join('\n'),
    );
    for (let i = 0; i < 3; i++) {
      const r = await rt.run(task(file, { instance: { id: `inst-${i}`, role: 'default', index: i + 1, count: 3, params: {} } }));
      assert.equal(r.state, 'passed', `run ${i}: ${r.error?.message}`);
    }
    // and a run of another file after them sees nothing either
    const other = await runLua('iso-other.lua', 'expect(seen):to_be_nil()\nexpect(type(require("net").get)):to_be("function")\n');
    assert.equal(other.state, 'passed', other.error?.message);
  });

  test('bytecode never loads: load is text-only whatever mode is asked, and string.dump is gone', async () => {
    const r = await runLua(
      'bytecode.lua',
      [
        'expect(string.dump):to_be_nil()',
        'expect(("").dump):to_be_nil()',
        'expect(loadstring):to_be_nil()',
        'expect(dofile):to_be_nil()',
        'expect(loadfile):to_be_nil()',
        // a binary chunk (it starts with ESC "Lua") is refused even with mode "b"
        'local f, err = load("\\27Lua\\x54\\x00", "x", "b")',
        'expect(f):to_be_nil()',
        'expect(err):to_match("attempt to load a binary chunk")',
        'local g = load("return 1 + 1", "x", "b")',
        'expect(g()):to_be(2)',
      ].join('\n'),
    );
    assert.equal(r.state, 'passed', r.error?.message);
  });

  test('shared libraries cannot be changed for the next scenario: string metatable, _G metatable, expect, math, table, os', async () => {
    const hostile = await runLua(
      'hostile.lua',
      [
        'local function try(f) local ok, e = pcall(f); return ok, e end',
        'try(function() getmetatable("").__index.upper = function() return "HACKED" end end)',
        'try(function() rawset(getmetatable("").__index, "upper", function() return "HACKED" end) end)',
        'try(function() rawset(getmetatable(""), "__index", { upper = function() return "HACKED" end }) end)',
        'try(function() setmetatable(getmetatable(""), nil) end)',
        'try(function() getmetatable(expect(1)).to_be = function(self) return self end end)',
        'try(function() rawset(getmetatable(expect(1)), "to_be", function(self) return self end) end)',
        'math.random = function() return 4 end',
        'table.insert = function() end',
        'os.time = function() return 0 end',
        'string.rep = function() return "HACKED" end',
        'json.encode = function() return "HACKED" end',
        'coroutine.wrap = nil',
        'require("net").get = nil',
        // last: from here on every global of this scenario reads "HACKED"
        'getmetatable(_G).__index = function() return "HACKED" end',
      ].join('\n'),
    );
    assert.equal(hostile.state, 'passed', hostile.error?.message);
    const r = await runLua(
      'victim.lua',
      [
        'expect(("a"):upper()):to_be("A")',
        'expect(string.upper("a")):to_be("A")',
        'expect(getmetatable("").__index.upper("b")):to_be("B")',
        'expect(undefined_global):to_be_nil()',
        'expect(math.random(1, 1)):to_be(1)',
        'local t = {}; table.insert(t, 1); expect(#t):to_be(1)',
        'expect(os.time()):to_be_greater_than(0)',
        'expect(string.rep("x", 2)):to_be("xx")',
        'expect(json.encode({1})):to_be("[1]")',
        'expect(type(coroutine.wrap)):to_be("function")',
        'expect(type(require("net").get)):to_be("function")',
        'local ok = pcall(function() expect(1):to_be(2) end)',
        'expect(ok):to_be(false)',
      ].join('\n'),
    );
    assert.equal(r.state, 'passed', r.error?.message);
  });

  test('the shared metatables say so when written; a scenario\'s own stay writable', async () => {
    const r = await runLua(
      'ro.lua',
      [
        'local ok, e = pcall(function() getmetatable("").__index.upper = nil end)',
        'expect(ok):to_be(false)',
        'expect(e):to_contain("read-only")',
        'ok, e = pcall(function() getmetatable(expect(1)).to_be = nil end)',
        'expect(ok):to_be(false)',
        'expect(e):to_contain("read-only")',
        // a scenario's own _G metatable is its own to change
        'local mt = getmetatable(_G); local lookup = mt.__index',
        'mt.__index = function(t, k) local v = lookup(t, k); if v == nil then error("undefined global " .. k, 2) end; return v end',
        'expect(pcall(function() return nope end)):to_be(false)',
        // the scenario's own globals and libraries stay writable
        'string.shout = function(s) return s:upper() .. "!" end',
        'expect(string.shout("a")):to_be("A!")',
        'local mt = {}; local t = setmetatable({}, mt); expect(getmetatable(t)):to_be(mt)',
      ].join('\n'),
    );
    assert.equal(r.state, 'passed', r.error?.message);
  });

  test('json nesting: 1000 levels both ways, deeper is an error pcall catches, and the engine keeps working', async () => {
    const r = await runLua(
      'deep-json.lua',
      [
        // wasmoon moves nested tables without growing the Lua stack: 60 levels used to write over the heap
        'for i = 1, 20 do local v = json.decode(string.rep("[", 60) .. string.rep("]", 60)) end',
        'local t = {}; for i = 1, 60 do t = { t } end',
        'for i = 1, 20 do json.encode(t) end',
        'local v = json.decode(string.rep("[", 1000) .. string.rep("]", 1000))',
        'local d = 0; while v do d = d + 1; v = v[1] end',
        'expect(d):to_be(1000)',
        'local ok, e = pcall(json.decode, string.rep("[", 2e5) .. string.rep("]", 2e5))',
        'expect(ok):to_be(false)',
        'expect(e):to_contain("json.decode: nesting deeper than 1000")',
        'local deep = {}; for i = 1, 1e4 do deep = { deep } end',
        'ok, e = pcall(json.encode, deep)',
        'expect(ok):to_be(false)',
        'expect(e):to_contain("json.encode: nesting deeper than 1000")',
        'local loop = {}; loop.self = loop',
        'ok, e = pcall(json.encode, loop)',
        'expect(e):to_contain("json.encode: the table contains itself")',
        'local shared = { 1 }',
        'expect(json.encode({ shared, shared })):to_be("[[1],[1]]")',
      ].join('\n'),
    );
    assert.equal(r.state, 'passed', r.error?.message);
    const after = await runLua('after-json.lua', 'expect(string.upper("a")):to_be("A")\nexpect(json.encode({ a = { 1, 2 } })):to_be(\'{"a":[1,2]}\')\n');
    assert.equal(after.state, 'passed', after.error?.message);
  });

  test('nested tables passed to JS functions never write over the engine', async () => {
    const r = await runLua(
      'deep-args.lua',
      [
        // wasmoon read table arguments without growing the Lua stack: 60 levels wrote over the heap
        'local t = {}; for i = 1, 60 do t = { t } end',
        'for i = 1, 200 do pcall(sleep, t) end',
        'local shared = { 1 }; local cyc = { a = shared, b = shared }; cyc.self = cyc',
        'expect(pcall(sleep, cyc)):to_be(false)',
      ].join('\n'),
    );
    assert.equal(r.state, 'passed', r.error?.message);
    assert.equal(rt.crashed, undefined);
    const after = await runLua('after-args.lua', 'local x = {}\nfor j = 1, 1000 do x[j] = tostring(j) end\nexpect(string.upper("a")):to_be("A")\n');
    assert.equal(after.state, 'passed', after.error?.message);
  });

  test('deeply nested instance params (from a playbook) reach the scenario without writing over the engine', async () => {
    let params: Record<string, unknown> = { leaf: 'yes' };
    for (let i = 0; i < 40; i++) params = { next: params };
    const source = 'local p, d = instance.params, 0\nwhile p.next do p = p.next; d = d + 1 end\nexpect(d):to_be(40)\nexpect(p.leaf):to_be("yes")\n';
    for (let i = 0; i < 20; i++) {
      const r = await runLua('deep-params.lua', source, { instance: { id: 'i', role: 'r', index: 1, count: 1, params } });
      assert.equal(r.state, 'passed', r.error?.message);
    }
    const after = await runLua('after-params.lua', 'local x = {}\nfor j = 1, 1000 do x[j] = tostring(j) end\nexpect(#x):to_be(1000)\n');
    assert.equal(after.state, 'passed', after.error?.message);
    assert.equal(rt.crashed, undefined);
  });

  test('while true do end is stopped by the timeout', async () => {
    const r = await runLua('spin.lua', 'local n = 0\nwhile true do n = n + 1 end\n', { timeoutMs: 1000 });
    assert.equal(r.state, 'timedOut');
    assert.equal(r.error?.code, 'TIMEOUT');
    assert.equal(r.error?.location, 'spin.lua:2');
  });

  test('a timeout also stops a scenario waiting in sleep, and pcall cannot swallow it', async () => {
    const r = await runLua('sleepy.lua', 'pcall(function() while true do end end)\nwhile true do pcall(sleep, 0.01) end\n', { timeoutMs: 300 });
    assert.equal(r.state, 'timedOut');
  });

  test('cancel interrupts a run', async () => {
    const t = task(write('long.lua', 'sleep(30)\n'));
    const p = rt.run(t);
    setTimeout(() => rt.cancel(t.runId, 'interrupt'), 50);
    const r = await p;
    assert.equal(r.state, 'interrupted');
  });

  test('runaway allocation becomes a Lua error, and the engine keeps working', async () => {
    const r = await runLua('hog.lua', 'local t = {}\nfor i = 1, 1e9 do t[i] = string.rep("x", 64) .. i end\n', { memoryLimitBytes: 4 << 20 });
    assert.equal(r.state, 'error');
    assert.match(r.error?.message ?? '', /not enough memory/);
    const ok = await runLua('after-hog.lua', 'local t = {}\nfor i = 1, 1000 do t[i] = i end\nexpect(#t):to_be(1000)\n');
    assert.equal(ok.state, 'passed', ok.error?.message);
  });
});

describe('steps, checks and globals', () => {
  test('check tallies per name and per step; a failed step skips later steps', async () => {
    const r = await runLua(
      'steps.lua',
      [
        'check("top", true)',
        'step("one", function() check("c", true); check("c", false) end)',
        'step("two", function() error("step two broke") end)',
        'step("three", function() check("never", true) end)',
        'step("four", {continue_on_failure=true}, function() check("c", true) end)',
      ].join('\n'),
    );
    assert.equal(r.state, 'failed');
    assert.deepEqual(
      r.steps.map((s) => [s.name, s.state]),
      [['one', 'failed'], ['two', 'failed'], ['three', 'skipped'], ['four', 'passed']],
    );
    assert.deepEqual(r.steps[0].checks, [{ name: 'c', passed: 1, failed: 1 }]);
    assert.equal(r.steps[1].error?.message, 'steps.lua:3: step two broke');
    assert.equal(r.steps[1].error?.location, 'steps.lua:3');
    assert.deepEqual(r.checks, [
      { name: 'top', passed: 1, failed: 0 },
      { name: 'c', passed: 2, failed: 1 },
    ]);
    const mine = events.filter((e) => e.runId === r.runId).map((e) => `${e.ev.kind}:${'name' in e.ev ? e.ev.name : ''}`);
    assert.ok(mine.includes('step-start:one') && mine.includes('step-end:three'));
  });

  test('task.continueOnFailure runs later steps', async () => {
    const r = await runLua('steps2.lua', 'step("a", function() expect(1):to_be(2) end)\nstep("b", function() end)\n', { continueOnFailure: true });
    assert.deepEqual(r.steps.map((s) => s.state), ['failed', 'passed']);
    assert.equal(r.state, 'failed');
    assert.equal(r.steps[0].error?.message, 'steps2.lua:1: expected 1 to be 2');
  });

  test('log, print, env, json, instance, sleep and user coroutines', async () => {
    const r = await runLua(
      'globals.lua',
      [
        'print("hello", 1, {a=1})',
        'log.warn("careful")',
        'expect(env("GREETING")):to_be("hi")',
        'expect(env("MISSING", "dflt")):to_be("dflt")',
        'expect(json.decode(json.encode({a={1,2}})).a[2]):to_be(2)',
        'expect(instance.id):to_be("inst-1")',
        'expect(instance.params.n):to_be(3)',
        'local gen = coroutine.wrap(function() sleep("5ms"); coroutine.yield(1); sleep(0.001); return 2 end)',
        'expect(gen()):to_be(1)',
        'expect(gen()):to_be(2)',
      ].join('\n'),
    );
    assert.equal(r.state, 'passed', r.error?.message);
    const mine = logs.filter((l) => l.runId === r.runId);
    assert.deepEqual(mine.map((l) => [l.level, l.message]), [['info', 'hello 1 {a=1}'], ['warn', 'careful']]);
  });

  test('require of an unknown module names the available ones', async () => {
    const r = await runLua('req.lua', 'local x = require("nope")\n');
    assert.equal(r.state, 'error');
    assert.match(r.error?.message ?? '', /^req\.lua:1: module 'nope' not found \(available: .*net.*\)/);
  });
});
