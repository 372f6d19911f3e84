import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { parsePlaybook } from '../../src/playbook/playbook';
import { TopasError } from '../../src/errors';

const dir = path.resolve(__dirname, '..', '..', '..', 'fixtures', 'cli', 'no-app');

describe('playbook parsing', () => {
  test('roles with instances and params', () => {
    const pb = parsePlaybook('timeout: 2m\nroles:\n  - name: client\n    script: pass.lua\n    instances: 3\n    params: { prefix: c }\n', path.join(dir, 'pb.yaml'));
    assert.equal(pb.timeoutMs, 120_000);
    assert.equal(pb.roles[0].instances, 3);
    assert.equal(pb.roles[0].script, path.join(dir, 'pass.lua'));
    assert.deepEqual(pb.roles[0].params, { prefix: 'c' });
  });

  test('every problem is reported with its path', () => {
    try {
      parsePlaybook('timout: 2m\nroles:\n  - name: client\n    script: missing.lua\n    instances: 0\n  - name: client\n    script: pass.lua\n', path.join(dir, 'pb.yaml'));
      assert.fail('expected an error');
    } catch (err) {
      assert.ok(err instanceof TopasError);
      assert.equal(err.code, 'INVALID_PLAYBOOK');
      const paths = err.problems.map((p) => p.path);
      assert.deepEqual(paths.sort(), ['roles[0].instances', 'roles[0].script', 'roles[1].name', 'timout'].sort());
      assert.match(err.problems.find((p) => p.path === 'timout')!.message, /did you mean "timeout"/);
    }
  });

  test('declarative shaping needs at or on', () => {
    const pb = parsePlaybook('roles:\n  - name: c\n    script: pass.lua\nshaping:\n  - at: 10s\n    service: api\n    latency: 200ms\n  - on: load-started\n    service: db\n    down: true\n', path.join(dir, 'pb.yaml'));
    assert.deepEqual(pb.shaping[0], { atMs: 10_000, on: undefined, service: 'api', action: 'latency', args: ['200ms', {}] });
    assert.equal(pb.shaping[1].on, 'load-started');
    assert.throws(
      () => parsePlaybook('roles:\n  - name: c\n    script: pass.lua\nshaping:\n  - service: api\n    latency: 1s\n', path.join(dir, 'pb.yaml')),
      (err: TopasError) => /exactly one of `at/.test(err.format()),
    );
  });
});
