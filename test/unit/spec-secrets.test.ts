import { afterEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { AppSpec } from '../../src/spec/app-spec';
import { clearRegisteredSecrets, createMasker, maskDeep, maskedJson, maskSecrets, registerSecret, registerSecretsIn } from '../../src/spec/secrets';
import { escapeXmlAttr, escapeXmlText } from '../../src/reporters/junit-reporter';

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

  const SECRET = `pw&<>"' %/+x\\y`;
  const lowerHex = (t: string) => t.replace(/%[0-9A-F]{2}/g, (m) => m.toLowerCase());
  const forms: Record<string, string> = {
    raw: SECRET,
    encodeURIComponent: encodeURIComponent(SECRET),
    'encodeURIComponent, lowercase hex': lowerHex(encodeURIComponent(SECRET)),
    'form encoding (+ for space)': new URLSearchParams({ x: SECRET }).toString().slice(2),
    'form encoding, lowercase hex': lowerHex(new URLSearchParams({ x: SECRET }).toString().slice(2)),
    encodeURI: encodeURI(SECRET),
    'URL path': new URL(`http://h/${SECRET}`).pathname.slice(1),
    'URL query': new URL(`http://h/?${SECRET}`).search.slice(1),
    'encoded twice': encodeURIComponent(encodeURIComponent(SECRET)),
    JSON: JSON.stringify(SECRET).slice(1, -1),
    'JSON in JSON': JSON.stringify(JSON.stringify(SECRET).slice(1, -1)).slice(1, -1),
    'JSON, \\u escapes (Go)': JSON.stringify(SECRET).slice(1, -1).replace(/[&<>']/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`),
    'XML text': escapeXmlText(SECRET),
    'XML attribute': escapeXmlAttr(SECRET),
    'HTML (&#39;)': SECRET.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;'),
    'numeric entities': SECRET.replace(/[&<>"'\\]/g, (c) => `&#${c.charCodeAt(0)};`),
    'hex entities': SECRET.replace(/[&<>"'\\]/g, (c) => `&#x${c.charCodeAt(0).toString(16).toUpperCase()};`),
    'XML escaped twice': escapeXmlAttr(escapeXmlAttr(SECRET)),
    'XML of JSON': escapeXmlAttr(JSON.stringify(SECRET).slice(1, -1)),
  };

  for (const [name, form] of Object.entries(forms)) {
    test(`masks a secret with & < > " ' % / + space \\ in its ${name} form`, () => {
      registerSecret(SECRET);
      assert.equal(maskSecrets(`before ${form} after`), 'before *** after', form);
      assert.equal(createMasker(spec, [SECRET])(`[${form}]`), '[***]');
    });
  }

  test('masking keeps JSON and XML well-formed', () => {
    registerSecret(SECRET);
    const doc = { a: `x${SECRET}y`, [`k ${SECRET}`]: [SECRET, `\\${SECRET}\\`], n: 1 };
    const text = maskSecrets(JSON.stringify(doc));
    assert.deepEqual(JSON.parse(text), { a: 'x***y', 'k ***': ['***', '\\***\\'], n: 1 });
    const xml = `<a b="${escapeXmlAttr(SECRET)}">${escapeXmlText(`<${SECRET}>`)}</a>`;
    assert.equal(maskSecrets(xml), '<a b="***">&lt;***&gt;</a>');
  });

  test('maskDeep masks values and keys and keeps keys that mask alike apart', () => {
    registerSecret('tok-1234');
    registerSecret('tok-5678');
    const out = maskDeep({ 'http_reqs{name:/a?t=tok-1234}': { v: 1 }, 'http_reqs{name:/a?t=tok-5678}': { v: 2 }, list: ['tok-1234', 3, null, true] });
    assert.deepEqual(out, { 'http_reqs{name:/a?t=***}': { v: 1 }, 'http_reqs{name:/a?t=***} (2)': { v: 2 }, list: ['***', 3, null, true] });
    assert.equal(maskedJson({ e: new Error('x'), t: 'tok-5678' }), '{"e":{},"t":"***"}');
  });

  test('registerSecretsIn registers strings under secret-looking keys of a backend state', () => {
    registerSecretsIn({ postgres: { superPassword: 'gen-pass-1', port: 5432 }, proxyHost: { token: 'tok-host-2', pid: 1 }, services: { api: { env: { API_TOKEN: 'apitok', MODE: 'production' } } } });
    assert.equal(maskSecrets('gen-pass-1 tok-host-2 apitok production'), '*** *** *** production');
  });

  test('a password in a Basic auth header (base64 of user:password, any alignment, URL-safe too) is masked', () => {
    const mask = createMasker(spec);
    for (const user of ['admin', 'ad', 'a', '']) {
      const header = `Authorization: Basic ${Buffer.from(`${user}:s3cr3t!pw`).toString('base64')}`;
      assert.ok(mask(header).includes('***'), `${user}: ${mask(header)}`);
      assert.ok(!mask(header).includes(Buffer.from('s3cr3t!pw').toString('base64').slice(2, 10)), mask(header));
    }
    const urlSafe = Buffer.from('x:tok-abcdef?>>').toString('base64url');
    assert.ok(mask(urlSafe).includes('***'), mask(urlSafe));
    assert.equal(mask('Basic YWRtaW46b3RoZXI='), 'Basic YWRtaW46b3RoZXI=', 'another password is left alone');
  });

  test('a password written into SQL (quotes doubled) is masked in the statement PostgreSQL echoes', () => {
    const mask = createMasker({ ...spec, databases: [{ ...spec.databases[0], credentials: { user: 'u', password: `pw'x"y`, dbname: 'd' } }] });
    assert.equal(mask(`LINE 1: SELECT 'pw''x"y'::int`), `LINE 1: SELECT '***'::int`);
    assert.equal(mask(`CREATE ROLE "pw'x""y"`), `CREATE ROLE "***"`);
    assert.equal(mask(`pw'x"y`), '***');
  });
});
