import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { cli } from '../helpers/cli';
import { registerBackend } from '../../src/backends/registry';
import type { Backend } from '../../src/backends/backend';

/**
 * How errors reach the user: a TopasError as `error [CODE]: message` with its
 * hint, anything else as one INTERNAL line; JS stacks only with --debug.
 */
const STACK_LINE = /^\s+at .+:\d+:\d+\)?$/m;
const APP = ['--app', 'fixtures/cli/with-app/topas.yaml'];

function backend(name: string, parts: Partial<Backend>): void {
  registerBackend(name, () => ({
    name,
    probe: async () => ({ ok: true, reason: 'test backend' }),
    start: async () => {
      throw new Error('not used');
    },
    attach: async () => {
      throw new Error('not used');
    },
    sweep: async () => ({ removed: [] }),
    ...parts,
  }));
}

// a backend that breaks its contract (plain errors), as a buggy plugin would
backend('test-start-throws', {
  start: async () => {
    throw new Error('socket hang up');
  },
});
backend('test-probe-throws', {
  probe: async () => {
    throw new TypeError("Cannot read properties of undefined (reading 'x')");
  },
});

describe('error rendering', () => {
  test('a plain error while standing up is exit 3, one clear error, no stack', async () => {
    for (const argv of [
      ['up', ...APP, '--backend', 'test-start-throws'],
      ['run', 'fixtures/cli/with-app/smoke.lua', ...APP, '--backend', 'test-start-throws'],
    ]) {
      const r = await cli(argv);
      assert.equal(r.code, 3, `${argv[0]}: ${r.stderr}${r.stdout}`);
      assert.match(r.stdout + r.stderr, /backend test-start-throws: socket hang up/);
      assert.doesNotMatch(r.stdout + r.stderr, STACK_LINE, `${argv[0]}: ${r.stderr}${r.stdout}`);
    }
  });

  test('a non-TopasError reaching the top is one INTERNAL line; --debug adds the stack', async () => {
    const r = await cli(['up', ...APP, '--backend', 'test-probe-throws']);
    assert.equal(r.code, 1, r.stderr);
    assert.equal(r.stderr, "error [INTERNAL]: TypeError: Cannot read properties of undefined (reading 'x') (run with --debug for the stack)\n");
    assert.equal(r.stdout, '');

    const d = await cli(['up', ...APP, '--backend', 'test-probe-throws', '--debug']);
    assert.equal(d.code, 1, d.stderr);
    assert.match(d.stderr, /^error \[INTERNAL\]: TypeError: Cannot read properties of undefined/);
    assert.match(d.stderr, STACK_LINE);
  });

  test('--debug shows the stack of a TopasError too, below the message and hint', async () => {
    const r = await cli(['up', ...APP, '--backend', 'test-start-throws', '--debug']);
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /error \[SUT_START_FAILED\]: backend test-start-throws: socket hang up\nhint: [^\n]+\n/);
    assert.match(r.stderr, /caused by: Error: socket hang up/);
    assert.match(r.stderr, STACK_LINE);
  });
});
