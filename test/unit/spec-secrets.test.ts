import { afterEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { AppSpec } from '../../src/spec/app-spec';
import { clearRegisteredSecrets, createMasker, maskSecrets, registerSecret } from '../../src/spec/secrets';

const spec: AppSpec = {
  name: 'shop',
  file: '/x/topas.yaml',
  dir: '/x',
  databases: [{ name: 'db', engine: 'postgres', port: 5432, credentials: { user: 'admin', password: 's3cr3t!pw', dbname: 'testdb' }, ready: { timeoutMs: 1 } }],
  services: [
    {
      name: 'api',
      port: 80,
      ports: {},
      replicas: 1,
      env: { API_TOKEN: 'tok-abcdef', Stripe_Key: 'sk_live_123', DB_PASSWORD: '${db.password}', MODE: 'production', SHORT_SECRET: 'ab' },
      ready: { kind: 'tcp', timeoutMs: 1 },
      dependsOn: [],
    },
  ],
};

describe('secret masking', () => {
  afterEach(() => clearRegisteredSecrets());

  test('masks database passwords and env values with secret-looking names, also inside URLs', () => {
    const mask = createMasker(spec);
    assert.equal(mask('connecting to postgres://admin:s3cr3t!pw@127.0.0.1:5432/testdb'), 'connecting to postgres://admin:***@127.0.0.1:5432/testdb');
    assert.equal(mask('postgres://admin:s3cr3t!pw@h/db'.replace('s3cr3t!pw', encodeURIComponent('s3cr3t!pw'))), 'postgres://admin:***@h/db');
    assert.equal(mask('Authorization: Bearer tok-abcdef; key=sk_live_123'), 'Authorization: Bearer ***; key=***');
    assert.equal(mask('mode production ab'), 'mode production ab', 'non-secret names and values under 3 chars stay');
    assert.equal(mask('literal ${db.password}'), 'literal ${db.password}', 'the reference text itself is not secret');
  });

  test('masks the password of any URL with user:password@, and extra values', () => {
    const mask = createMasker(spec, ['extra-value']);
    assert.equal(mask('redis://default:unknownpw@cache:6379 extra-value'), 'redis://default:***@cache:6379 ***');
    assert.equal(mask('http://example.com/path@x'), 'http://example.com/path@x');
  });

  test('process-wide registry for loggers', () => {
    assert.equal(maskSecrets('hunter22 is here'), 'hunter22 is here');
    registerSecret('hunter22');
    registerSecret('x');
    assert.equal(maskSecrets('hunter22 is here, x too'), '*** is here, x too');
    assert.equal(createMasker(spec)('hunter22'), '***', 'spec maskers also apply registered secrets');
  });

  test('a secret containing another is masked whole', () => {
    registerSecret('abc');
    registerSecret('abcdef');
    assert.equal(maskSecrets('abcdef abc'), '*** ***');
  });
});
