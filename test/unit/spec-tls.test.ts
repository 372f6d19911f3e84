import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as os from 'node:os';
import * as path from 'node:path';
import { TopasError } from '../../src/errors';
import { parseAppSpec } from '../../src/spec/load-app-spec';

const parse = (yaml: string) => parseAppSpec(yaml, path.join(os.tmpdir(), 'topas.yaml'), { env: {} });

test('tls: true on the main port and { port, tls } on named ports', () => {
  const spec = parse(['name: a', 'services:', '  - name: api', '    command: node s.js', '    port: 8443', '    tls: true', '    ports: { grpc: { port: 9443, tls: true }, admin: 9000, metrics: { port: 9100 } }'].join('\n'));
  const s = spec.services[0];
  assert.equal(s.tls, true);
  assert.deepEqual(s.ports, { grpc: 9443, admin: 9000, metrics: 9100 });
  assert.deepEqual(s.tlsPorts, ['grpc']);
  const plain = parse(['name: a', 'services:', '  - name: api', '    command: node s.js', '    port: 8080', '    ports: { grpc: 9090 }'].join('\n')).services[0];
  assert.equal(plain.tls, undefined);
  assert.equal(plain.tlsPorts, undefined);
});

test('a bad tls value or an unknown key of a named port is invalid input', () => {
  for (const [bad, want] of [
    ['    tls: "yes"', /tls.*expected true or false/],
    ['    ports: { grpc: { port: 9443, tls: 1 } }', /grpc\.tls.*expected true or false/],
    ['    ports: { grpc: { port: 9443, tsl: true } }', /grpc\.tsl.*unknown field/],
    ['    ports: { grpc: { tls: true } }', /grpc\.port/],
  ] as const) {
    let err: unknown;
    try {
      parse(['name: a', 'services:', '  - name: api', '    command: node s.js', '    port: 8443', bad].join('\n'));
    } catch (e) {
      err = e;
    }
    assert.ok(err instanceof TopasError, `${bad}: expected a TopasError`);
    assert.equal(err.exitCode, 2);
    assert.match(err.problems.map((p) => `${p.path}: ${p.message}`).join('\n'), want, bad);
  }
});
