import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { VuHost, type Vu, type VuCommandResult } from '../../src/lua/vu-host';

// VUs share one Lua heap: the memory cap must stop the VU that keeps memory,
// not one that only makes (a lot of) garbage beside it.

let dir: string;

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-vu-mem-'));
});

after(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

const SCRIPT = [
  'local KiB = string.rep("x", 1024); local parts = {}; for i = 1, 1024 do parts[i] = KiB end',
  'local MiB = table.concat(parts)',
  'local kept = {}',
  'function iteration(ctx)',
  '  local big = MiB .. MiB .. MiB .. MiB .. ctx.iteration',
  '  if ctx.vu == 1 then kept[#kept + 1] = big end',
  'end',
].join('\n');

function iterate(host: VuHost, vu: Vu, n: number): Promise<VuCommandResult> {
  return new Promise((resolve) => host.runIteration(vu, n, resolve));
}

test('the VU over its cap fails and dies; a VU making as much garbage beside it is not blamed', async () => {
  const file = path.join(dir, 'mem.lua');
  fs.writeFileSync(file, SCRIPT);
  const host = await VuHost.create({ file, baseDir: dir, env: {}, endpoints: {}, rpc: async () => undefined, log: () => undefined, memoryLimitBytes: 32 * 1024 * 1024 });
  try {
    const keeper = await host.createVu(1);
    assert.ok((await host.setContext(keeper, null, 1)).ok);
    const churner = await host.createVu(2);
    assert.ok((await host.setContext(churner, null, 2)).ok);
    let keeperError: string | undefined;
    let keeperIterations = 0;
    for (let i = 0; i < 60; i++) {
      const c = await iterate(host, churner, i);
      assert.ok(c.ok, `the churner failed at iteration ${i}: ${c.ok ? '' : c.error}`);
      if (keeper.state === 'dead') continue;
      const k = await iterate(host, keeper, i);
      keeperIterations++;
      if (!k.ok) keeperError = k.error;
    }
    // 4 MiB kept per iteration against a 32 MiB cap
    assert.match(keeperError ?? '', /^VU memory over 32 MiB: /);
    assert.equal(keeper.state, 'dead');
    assert.ok(keeperIterations >= 8 && keeperIterations <= 12, `the keeper ran ${keeperIterations} iterations`);
    assert.equal(churner.state, 'idle');
    // the dead VU's memory goes with it: the engine is back near what the churner holds
    host.discardVu(keeper);
    const fresh = await host.createVu(1);
    assert.ok((await host.setContext(fresh, null, 1)).ok);
    for (let i = 0; i < 6; i++) assert.ok((await iterate(host, fresh, i)).ok, 'a fresh VU starts from nothing');
    assert.ok(fresh.memBytes < 32 * 1024 * 1024, `fresh VU meter ${fresh.memBytes}`);
  } finally {
    await host.close();
  }
});
