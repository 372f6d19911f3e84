import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { VuHost, type Vu, type VuCommandResult } from '../../src/lua/vu-host';

/**
 * Load VUs make their JS modules on first use (prelude.ts lazy_module): the
 * table a script got from require must behave as the module itself, per VU.
 */
const SCRIPT = `
local net = require("net")
local ok, err = pcall(require, "nope")
check("an unknown module fails at the require", not ok and tostring(err):find("module 'nope' not found", 1, true) ~= nil)
check("a second require is the same table", require("net") == net)
function iteration(ctx)
  check("exports are functions", type(net.get) == "function" and type(net.resolve) == "function")
  local keys = 0
  for _ in pairs(net) do keys = keys + 1 end
  check("pairs sees the exports", keys > 5)
  check("a call works", net.resolve("http://example.invalid/x") == "http://example.invalid/x")
  if ctx.vu == 1 then
    net.extra = ctx.iteration
    check("a write stays in the module table", net.extra == ctx.iteration)
  else
    check("another VU's write is not seen", net.extra == nil)
  end
end
`;

let dir: string;
let host: VuHost;
const checks: Array<{ name: string; ok: boolean }> = [];

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-vu-modules-'));
  const file = path.join(dir, 'modules.lua');
  fs.writeFileSync(file, SCRIPT);
  host = await VuHost.create({ file, baseDir: dir, env: {}, endpoints: {}, rpc: async () => undefined, log: () => undefined, onCheck: (name, ok) => checks.push({ name, ok }) });
});

after(async () => {
  await host.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

function iterate(vu: Vu, n: number): Promise<VuCommandResult> {
  return new Promise((resolve) => host.runIteration(vu, n, resolve));
}

describe('VU modules', () => {
  test('a required module is made on first use, behaves as the module, and stays per VU', async () => {
    const vus = [await host.createVu(1), await host.createVu(2)];
    for (const [i, vu] of vus.entries()) assert.deepEqual(await host.setContext(vu, undefined, i + 1), { ok: true, value: undefined });
    // set up and parked: no module instance yet
    assert.deepEqual(vus.map((v) => v.modules.length), [0, 0]);
    for (let n = 0; n < 3; n++) {
      for (const vu of vus) {
        const r = await iterate(vu, n);
        assert.ok(r.ok, r.ok ? '' : r.error);
      }
    }
    assert.deepEqual(vus.map((v) => v.modules.length), [1, 1]);
    const failed = checks.filter((c) => !c.ok);
    assert.deepEqual(failed, []);
    // top level twice (2 checks each), then 5 checks per iteration
    assert.equal(checks.length, 2 * 2 + 2 * 3 * 4);
  });
});
