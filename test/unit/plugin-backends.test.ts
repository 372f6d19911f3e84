import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { Config } from '@oclif/core';
import { registerPluginBackends } from '../../src/backends/plugin-backends';
import { backendNames, getBackend } from '../../src/backends/registry';

test('a plugin registers a backend through the `backends` hook', async () => {
  assert.ok(!backendNames().includes('fake'));
  const config = await Config.load(path.resolve(__dirname, '..', '..', '..', 'fixtures', 'plugins', 'fake-backend'));
  await registerPluginBackends(config);
  assert.ok(backendNames().includes('fake'));
  const probe = await getBackend('fake').probe({} as never);
  assert.deepEqual(probe, { ok: false, reason: 'the fake backend runs nothing' });
});
