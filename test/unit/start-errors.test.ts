import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TopasError } from '../../src/errors';
import type { AppSpec, ServiceSpec } from '../../src/spec/app-spec';
import { initSqlFailure, logExcerpt, replicaStartFailure, specWhere } from '../../src/backends/start-errors';

function service(name: string, extra: Partial<ServiceSpec> = {}): ServiceSpec {
  return { name, command: ['node', 'server.js'], port: 8080, ports: {}, replicas: 1, env: {}, ready: { kind: 'http', path: '/healthz', timeoutMs: 2000 }, dependsOn: [], ...extra };
}

const spec: AppSpec = {
  name: 'shop',
  file: '/somewhere/topas.yaml',
  dir: '/somewhere',
  services: [service('web'), service('api', { ready: { kind: 'log', pattern: 'listening', timeoutMs: 5000 } })],
  databases: [{ name: 'db', engine: 'postgres', port: 5432, credentials: { user: 'u', password: 'p', dbname: 'd' }, initSQL: 'CREATE TABLE a (x int);\n  CREATE TABLE b (;\n', ready: { timeoutMs: 1000 } }],
};

test('specWhere names the list index and the file', () => {
  assert.equal(specWhere(spec, 'api'), 'services[1] (api) in topas.yaml');
  assert.equal(specWhere(spec, 'db'), 'databases[0] (db) in topas.yaml');
});

test('logExcerpt: the last 20 non-empty lines, each with the replica prefix', () => {
  const text = Array.from({ length: 30 }, (_, i) => `line ${i + 1}`).join('\n\n');
  const out = logExcerpt(text, 'api-2').split('\n');
  assert.equal(out[0], 'last 20 log lines of api-2:');
  assert.equal(out[1], '[api-2] line 11');
  assert.equal(out[20], '[api-2] line 30');
  assert.equal(logExcerpt('', 'api-1'), 'api-1 printed nothing');
});

test('a replica that exited: its code in the hint, its logs in the message', () => {
  const err = new TopasError('SUT_START_FAILED', 'service web replica 1: exited while waiting for readiness (http GET /healthz): exit code 127');
  const out = replicaStartFailure(err, { spec, service: spec.services[0], replica: 1, backend: 'local', exited: 'exit code 127', logs: 'sh: foo: not found\n' }) as TopasError;
  assert.equal(out.code, 'SUT_START_FAILED');
  assert.match(out.message, /exit code 127\nlast 1 log line of web-1:\n\[web-1\] sh: foo: not found$/);
  assert.match(out.hint!, /^the service exited with code 127 before it was ready.*services\[0\] \(web\) in topas\.yaml.*a program it runs was not found/);
});

test('a replica never ready: the readiness check in the hint; interrupts pass unchanged', () => {
  const err = new TopasError('READINESS_TIMEOUT', 'service api replica 1: not ready after 5.00s');
  const out = replicaStartFailure(err, { spec, service: spec.services[1], replica: 1, backend: 'docker', logs: 'booting' }) as TopasError;
  assert.match(out.hint!, /no log line matched "listening" within 5\.00s: check `ready\.log` of services\[1\] \(api\)/);
  const stop = new TopasError('INTERRUPTED', 'interrupted');
  assert.equal(replicaStartFailure(stop, { spec, service: spec.services[1], replica: 1, backend: 'docker', logs: '' }), stop);
});

test('initSqlFailure points at the line PostgreSQL names by character position', () => {
  const pgError = Object.assign(new Error('syntax error at or near ";"'), { position: String('CREATE TABLE a (x int);\n  CREATE TABLE b ('.length + 1) });
  const out = initSqlFailure(spec, spec.databases[0], pgError);
  assert.equal(out.code, 'SUT_START_FAILED');
  assert.equal(out.message, 'database db: initSQL failed: syntax error at or near ";"\ninitSQL line 2: CREATE TABLE b (;');
  assert.match(out.hint!, /`initSQL` of databases\[0\] \(db\) in topas\.yaml; it runs once, as user u in database d/);
});
