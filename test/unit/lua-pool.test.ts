import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import type { ApplyServiceChange, EndpointMap, KillOptions, Sut } from '../../src/backends/backend';
import { ScenarioPool } from '../../src/run/scenario-pool';
import { createSutRpcHandler } from '../../src/run/sut-rpc';
import type { LogLine, ScenarioTask } from '../../src/run/scenario-types';

let dir: string;
let seq = 0;

function write(name: string, source: string): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, source);
  return file;
}

function task(file: string, over: Partial<ScenarioTask> = {}): ScenarioTask {
  return {
    runId: `pool-${++seq}`,
    file,
    baseDir: dir,
    name: path.basename(file),
    timeoutMs: 10_000,
    env: {},
    instance: { id: 'i-1', role: 'default', index: 1, count: 1, params: {} },
    endpoints: {},
    memoryLimitBytes: 32 << 20,
    continueOnFailure: false,
    ...over,
  };
}

/** Just the Sut methods the rpc handler calls, recording each call. */
function recordingSut(calls: Array<[string, unknown[]]>): Sut {
  let replicas = 1;
  const endpointMap = (): EndpointMap => ({
    api: { kind: 'service', urls: Array.from({ length: replicas }, (_, i) => `http://127.0.0.1:${9000 + i}`), extra: {} },
  });
  const rec = (name: string, args: unknown[]) => calls.push([name, args]);
  const sut: Partial<Sut> = {
    services: async () => {
      rec('services', []);
      return [{ name: 'api', kind: 'service', replicas, ready: true, endpoints: endpointMap().api.urls }];
    },
    endpoint: (name: string, port?: string) => {
      rec('endpoint', port === undefined ? [name] : [name, port]);
      return endpointMap()[name].urls[0];
    },
    endpointMap,
    applyService: async (name: string, change: ApplyServiceChange) => void rec('applyService', [name, change]),
    waitReady: async (name: string, timeoutMs?: number) => void rec('waitReady', [name, timeoutMs]),
    scale: async (name: string, n: number) => {
      rec('scale', [name, n]);
      replicas = n;
    },
    kill: async (name: string, opts?: KillOptions) => void rec('kill', [name, opts]),
    logs: async (name: string, opts?: { tail?: number }) => {
      rec('logs', [name, opts]);
      return 'line1\nline2\n';
    },
    exec: async (name: string, argv: string[]) => {
      rec('exec', [name, argv]);
      return { code: 0, stdout: argv.join(' '), stderr: '' };
    },
  };
  return sut as Sut;
}

let pool: ScenarioPool;
const calls: Array<[string, unknown[]]> = [];
const logs: LogLine[] = [];
const pushed: EndpointMap[] = [];

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-pool-'));
  const sut = recordingSut(calls);
  pool = new ScenarioPool({
    workers: 2,
    rpc: createSutRpcHandler(sut, (map) => {
      pushed.push(map);
      pool.setEndpoints(map);
    }),
    onLog: (l) => logs.push(l),
    onEvent: () => undefined,
  });
});

after(async () => {
  await pool.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

test('runs scenarios in workers, many at once', async () => {
  const ok = write('ok.lua', 'sleep(0.05)\nprint("done", instance.id)\nexpect(1):to_be(1)\n');
  const bad = write('bad.lua', '\nexpect(1):to_be(2)\n');
  const results = await Promise.all([pool.run(task(ok)), pool.run(task(ok)), pool.run(task(ok)), pool.run(task(bad))]);
  assert.deepEqual(results.map((r) => r.state), ['passed', 'passed', 'passed', 'failed']);
  assert.equal(results[3].error?.location, 'bad.lua:2');
  assert.equal(logs.filter((l) => l.message === 'done i-1').length, 3);
});

test('a timed-out while-true loop resolves as timedOut and the worker stays usable', async () => {
  const spin = write('spin.lua', 'while true do end\n');
  const r = await pool.run(task(spin, { timeoutMs: 1000 }));
  assert.equal(r.state, 'timedOut');
  const again = await pool.run(task(write('after.lua', 'expect(2):to_be(2)\n')));
  assert.equal(again.state, 'passed');
});

test('a scenario that breaks its Lua engine fails alone with a clear message; the next one runs on a fresh engine', async () => {
  const one = new ScenarioPool({ workers: 1, rpc: async () => undefined, onLog: () => undefined, onEvent: () => undefined });
  try {
    // wasmoon reads a table argument recursively in JS: 1e5 levels throw through Lua's C frames
    const trap = write('trap.lua', 'local t = {}\nfor i = 1, 1e5 do t = { t } end\npcall(sleep, t)\n');
    const a = await one.run(task(trap));
    const b = await one.run(task(write('fine.lua', 'expect(("a"):upper()):to_be("A")\nexpect(json.decode("[1]")[1]):to_be(1)\n')));
    assert.equal(b.state, 'passed', b.error?.message);
    assert.equal(a.state, 'error');
    assert.match(a.error?.message ?? '', /^trap\.lua crashed the Lua engine \(.+\); the engine was discarded/);
    // a scenario sharing the broken engine cannot go on (one wasm memory per worker): it fails naming the culprit
    const waiting = one.run(task(write('bystander.lua', 'sleep(1)\n')));
    await new Promise((r) => setTimeout(r, 100));
    const [again, bystander] = await Promise.all([one.run(task(trap)), waiting]);
    assert.match(again.error?.message ?? '', /crashed the Lua engine/);
    assert.equal(bystander.state, 'error');
    assert.match(bystander.error?.message ?? '', /the Lua engine crashed while running trap\.lua/);
    const c = await one.run(task(write('fine2.lua', 'expect(1):to_be(1)\n')));
    assert.equal(c.state, 'passed', c.error?.message);
  } finally {
    await one.close();
  }
});

test('cancelAll resolves running scenarios as interrupted', async () => {
  const long = write('long.lua', 'sleep(60)\n');
  const p = Promise.all([pool.run(task(long)), pool.run(task(long))]);
  await new Promise((r) => setTimeout(r, 200));
  pool.cancelAll('interrupt');
  const rs = await p;
  assert.deepEqual(rs.map((r) => r.state), ['interrupted', 'interrupted']);
});

test('sut calls cross to the main thread with the Sut argument lists, and push endpoints after changes', async () => {
  const file = write(
    'sut.lua',
    [
      'local sut = require("sut")',
      'local net = require("net")',
      'expect(#sut.services()):to_be(1)',
      'expect(sut.endpoint("api")):to_be("http://127.0.0.1:9000")',
      'sut.apply_service("api", {version="2.0", replicas=2})',
      'sut.wait_ready("api", "5s")',
      'sut.scale("api", 3)',
      'expect(net.resolve("http://api/x?y=1")):to_match("^http://127.0.0.1:900%d/x%?y=1$")',
      'sut.kill("api", {signal="SIGKILL", replica=2})',
      'expect(sut.logs("api", {tail=5})):to_contain("line2")',
      'expect(sut.exec("api", {"echo", "hi"}).stdout):to_be("echo hi")',
    ].join('\n'),
  );
  calls.length = 0;
  const r = await pool.run(task(file));
  assert.equal(r.state, 'passed', r.error?.message);
  assert.deepEqual(calls, [
    ['services', []],
    ['endpoint', ['api']],
    ['applyService', ['api', { version: '2.0', replicas: 2 }]],
    ['waitReady', ['api', 5000]],
    ['scale', ['api', 3]],
    ['kill', ['api', { signal: 'SIGKILL', replica: 2 }]],
    ['logs', ['api', { tail: 5 }]],
    ['exec', ['api', ['echo', 'hi']]],
  ]);
  assert.ok(pushed.length >= 3);
  assert.equal(pushed[pushed.length - 1].api.urls.length, 3);
});

test('a failing sut call raises in Lua with the call name and the scenario line', async () => {
  const r = await pool.run(task(write('sut-bad.lua', 'local sut = require("sut")\n\nsut.stop("api")\n')));
  assert.equal(r.state, 'error');
  assert.equal(r.error?.location, 'sut-bad.lua:3');
  assert.match(r.error?.message ?? '', /^sut-bad\.lua:3: sut\.stop: /);
});

test('cancel(runIds, why) interrupts only those runs and keeps the reason', async () => {
  const long = write('long2.lua', 'sleep(60)\n');
  const quick = write('quick.lua', 'sleep(0.3)\nexpect(1):to_be(1)\n');
  const victim = task(long);
  const p = Promise.all([pool.run(victim), pool.run(task(quick))]);
  await new Promise((r) => setTimeout(r, 100));
  pool.cancel([victim.runId], 'instance b-1 failed');
  const [v, q] = await p;
  assert.equal(v.state, 'interrupted');
  assert.match(v.error?.message ?? '', /instance b-1 failed$/);
  assert.equal(q.state, 'passed');
});

test('a worker thread that dies keeps its scenarios\' finished steps and checks; the others on it end as clear errors without a JS stack', async () => {
  const a = write('crash-a.lua', 'step("one", function() check("c1", true) end)\nstep("two", function() check("c2", true); sleep(30) end)\nstep("three", function() end)\n');
  const b = write('crash-b.lua', 'sleep(30)\n');
  const ta = task(a);
  const tb = task(b);
  // killed once step "two" has checked c2 (then both scenarios sleep inside the one worker):
  // on event, not after a fixed delay, since a busy machine may boot the worker slowly
  let c2Seen!: () => void;
  const c2 = new Promise<void>((resolve) => (c2Seen = resolve));
  const onEvent = (_runId: string, e: { kind: string; name: string }) => {
    if (e.kind === 'check' && e.name === 'c2') c2Seen();
  };
  const p = new ScenarioPool({ workers: 1, rpc: async () => undefined, onLog: () => undefined, onEvent });
  try {
    const kill = Promise.race([c2, delay(20_000)])
      .then(() => delay(200))
      .then(() => (p as unknown as { slots: Array<{ worker: { stop(): Promise<void> } }> }).slots[0].worker.stop());
    const [ra, rb] = await Promise.all([p.run(ta), p.run(tb), kill]);
    assert.equal(ra.state, 'error');
    assert.deepEqual(ra.steps.map((s) => [s.name, s.state]), [['one', 'passed'], ['two', 'failed']]);
    assert.deepEqual(ra.steps[0].checks, [{ name: 'c1', passed: 1, failed: 0 }]);
    assert.deepEqual(ra.checks, [{ name: 'c1', passed: 1, failed: 0 }, { name: 'c2', passed: 1, failed: 0 }]);
    assert.match(ra.error?.message ?? '', /worker thread running this scenario stopped/);
    assert.equal(rb.state, 'error');
    assert.match(rb.error?.message ?? '', /worker thread running this scenario stopped/);
    for (const r of [ra, rb]) assert.equal(r.error?.stack, undefined, 'no JS stack in the report');
    for (const s of ra.steps) assert.equal(s.error?.stack, undefined);
    // the pool replaced the worker: it still runs scenarios
    const again = await p.run(task(write('after-crash.lua', 'expect(1):to_be(1)\n')));
    assert.equal(again.state, 'passed');
  } finally {
    await p.close();
  }
});
