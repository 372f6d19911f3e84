import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import * as api from '../../src/index';
import { TopasError } from '../../src/errors';

const DIST_SRC = path.resolve(__dirname, '..', '..', 'src');

test('the public API carries what a backend plugin builds on', () => {
  for (const name of ['TopasError', 'EXIT_CODES', 'sutErrors', 'RoundRobin', 'OpQueue', 'servingPool', 'serviceEntry', 'databaseEntry', 'postgresUrl', 'resolveValue', 'replicaPrefix', 'mergeReplicaLogs', 'lifecycleOf', 'healBackoffMs', 'waitForHttp', 'waitForTcp', 'waitForLog', 'sleep', 'freePort', 'startPostgres', 'CoreBackend', 'CoreSut', 'probeReplica', 'nodeExecutable', 'replicaStartFailure', 'commandHint']) {
    assert.notEqual(typeof (api as Record<string, unknown>)[name], 'undefined', name);
  }
  assert.equal(api.sutErrors.unknownTarget('app', 'nope', ['api']).code, 'SCENARIO_FAILED');
});

test('loading the public API loads neither the CLI framework nor a backend', () => {
  const r = spawnSync(process.execPath, ['-e', `require(${JSON.stringify(path.join(DIST_SRC, 'index.js'))}); console.log(JSON.stringify(Object.keys(require.cache)))`], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const loaded = (JSON.parse(r.stdout) as string[]).filter((f) => /@oclif|[\\/]commands[\\/]|testcontainers|wasmoon|local-sut|docker-sut/.test(f));
  assert.deepEqual(loaded, []);
});

test("a TopasError from a plugin's own copy of topas is a TopasError of the CLI's copy", () => {
  const file = require.resolve('../../src/errors');
  const cached = require.cache[file];
  delete require.cache[file];
  try {
    const other = require(file) as typeof import('../../src/errors');
    assert.notEqual(other.TopasError, TopasError);
    const err = new other.TopasError('SUT_START_FAILED', 'from the plugin');
    assert.ok(err instanceof TopasError);
    assert.equal((err as TopasError).exitCode, 3);
    assert.ok(new TopasError('INVALID_FLAGS', 'x') instanceof other.TopasError);
    assert.ok(!(new Error('plain') instanceof TopasError));
    assert.ok(!(Object.assign(new Error('look-alike'), { name: 'TopasError', code: 'INTERNAL' }) instanceof TopasError));
    assert.ok(new TopasError('INTERNAL', 'x') instanceof Error);
  } finally {
    require.cache[file] = cached;
  }
});
