import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { REPO_ROOT } from '../helpers/cli';
import { VuHost, type VuCommandResult } from '../../src/lua/vu-host';

test('load VUs: deeply nested json is a catchable error and the engine stays sound', async () => {
  const host = await VuHost.create({
    file: path.join(REPO_ROOT, 'fixtures', 'hostile', 'load-deep-json.lua'),
    baseDir: REPO_ROOT,
    env: {},
    endpoints: {},
    rpc: async () => undefined,
    log: () => undefined,
  });
  let closed = false;
  try {
    const vu = await host.createVu(1);
    for (let i = 0; i < 3; i++) {
      const r = await new Promise<VuCommandResult>((resolve) => host.runIteration(vu, i, resolve));
      assert.deepEqual(r.ok ? 'ok' : r.error, 'ok');
    }
    // lua_close walks the whole heap: it traps if anything was written over
    await host.close();
    closed = true;
  } finally {
    if (!closed) await host.close().catch(() => undefined);
  }
});
