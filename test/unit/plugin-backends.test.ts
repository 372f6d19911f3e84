import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { Config } from '@oclif/core';
import { registerPluginBackends } from '../../src/backends/plugin-backends';
import { backendNames, getBackend } from '../../src/backends/registry';

test('a plugin registers a backend through the namespaced `topas:backends` hook', async () => {
  assert.ok(!backendNames().includes('fake'));
  const config = await Config.load(path.resolve(__dirname, '..', '..', '..', 'fixtures', 'plugins', 'fake-backend'));
  await registerPluginBackends(config);
  assert.ok(backendNames().includes('fake'));
  const probe = await getBackend('fake').probe({} as never);
  assert.deepEqual(probe, { ok: false, reason: 'the fake backend runs nothing' });
});

test('a plugin cannot replace local, docker or auto; auto tries plugin backends after the built-in ones', async () => {
  await import('../../src/backends');
  const { registerPluginBackend, pluginBackendNames, BUILT_IN_BACKENDS } = await import('../../src/backends/registry');
  const impostor = () => ({ name: 'local' }) as never;
  for (const name of ['local', 'docker', 'auto']) assert.match(registerPluginBackend(name, impostor) ?? '', /built-in backend name; a plugin cannot replace it/);
  assert.equal(getBackend('local').constructor.name, 'LocalBackend');
  assert.match(registerPluginBackend('Bad Name', impostor) ?? '', /not a backend name/);
  assert.deepEqual([...BUILT_IN_BACKENDS], ['docker', 'local']);
  assert.ok(!pluginBackendNames().includes('local') && !pluginBackendNames().includes('docker'));
});
