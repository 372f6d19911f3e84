import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startHttpServer, type TestHttpServer } from '../helpers/http-server';
import { compileCollection, replayCollection } from '../../src/postman/collection-replay';
import { runPostmanCollection } from '../../src/postman/newman-run';
import { createUrlResolver } from '../../src/lua/modules/net';

let dir: string;
let a: TestHttpServer;
let b: TestHttpServer;
let collectionFile: string;
let environmentFile: string;

const test_ = (name: string, code: string) => ({ listen: 'test', script: { type: 'text/javascript', exec: [`pm.test(${JSON.stringify(name)}, function () { ${code} });`] } });

/** Two services behind the name `echo`, so round-robin shows; bearer auth from the collection, basic on one request, apikey in the query on a folder. */
const COLLECTION = {
  info: { name: 'replay', schema: 'https://schema.getpostman.com/json/collection/v2.1.0/collection.json' },
  variable: [
    { key: 'baseUrl', value: 'http://echo' },
    { key: 'token', value: 'from-collection' },
  ],
  auth: { type: 'bearer', bearer: [{ key: 'token', value: '{{token}}', type: 'string' }] },
  item: [
    {
      name: 'make id',
      event: [
        { listen: 'prerequest', script: { type: 'text/javascript', exec: ['pm.variables.set("id", "id-" + pm.variables.get("suffix"));'] } },
        test_('status is 200', 'pm.response.to.have.status(200);'),
        test_('bearer from the collection', 'pm.expect(pm.response.json().headers.authorization).to.eql("Bearer from-env");'),
        test_('body has the id', 'pm.expect(JSON.parse(pm.response.json().body).id).to.eql(pm.variables.get("id"));'),
        { listen: 'test', script: { type: 'text/javascript', exec: ['pm.environment.set("seen", pm.response.json().url);'] } },
      ],
      request: {
        method: 'POST',
        header: [{ key: 'Content-Type', value: 'application/json' }],
        body: { mode: 'raw', raw: '{"id": "{{id}}"}' },
        url: '{{baseUrl}}/things?x={{suffix}}',
      },
    },
    {
      name: 'keys',
      auth: { type: 'apikey', apikey: [{ key: 'key', value: 'api_key' }, { key: 'value', value: 'k-1' }, { key: 'in', value: 'query' }] },
      item: [
        {
          name: 'get by id',
          event: [
            test_('api key in the query', 'pm.expect(pm.response.json().url).to.include("api_key=k-1");'),
            test_('the id from the first request', 'pm.expect(pm.response.json().url).to.include("/things/id-7");'),
            test_('this one fails', 'pm.expect(pm.response.code).to.eql(201);'),
          ],
          request: { method: 'GET', url: '{{baseUrl}}/things/{{id}}' },
        },
        {
          name: 'basic',
          event: [test_('basic auth', 'pm.expect(pm.response.json().headers.authorization).to.eql("Basic " + btoa("u:p"));')],
          request: { method: 'GET', url: '{{baseUrl}}/basic', auth: { type: 'basic', basic: [{ key: 'username', value: 'u' }, { key: 'password', value: 'p' }] } },
        },
      ],
    },
  ],
};

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-replay-'));
  a = await startHttpServer();
  b = await startHttpServer();
  collectionFile = path.join(dir, 'replay.postman_collection.json');
  fs.writeFileSync(collectionFile, JSON.stringify(COLLECTION));
  environmentFile = path.join(dir, 'env.json');
  fs.writeFileSync(environmentFile, JSON.stringify({ name: 'env', values: [{ key: 'token', value: 'from-env', enabled: true }, { key: 'suffix', value: '0', enabled: true }] }));
});

after(async () => {
  await a.close();
  await b.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const resolver = () => createUrlResolver(() => ({ echo: { kind: 'service', urls: [a.url, b.url], extra: {} } }));

/** name › test -> passed, for comparing runs */
function outcomes(list: { name: string; assertions: { name: string; passed: boolean }[] }[]): Record<string, boolean> {
  const out: Record<string, boolean> = {};
  for (const r of list) for (const x of r.assertions) out[`${r.name} › ${x.name}`] = x.passed;
  return out;
}

test('replay: variables, scripts, auth and tests as newman runs them, spread over the replicas', async () => {
  const compiled = compileCollection({ collection: collectionFile, environment: environmentFile, vars: { suffix: '7' } });
  assert.deepEqual(compiled.requests.map((r) => r.name), ['make id', 'get by id', 'basic']);
  const before = a.requests.length + b.requests.length;
  const replayed = await replayCollection(compiled, resolver(), new AbortController().signal);
  assert.equal(a.requests.length + b.requests.length - before, 3);
  assert.ok(a.requests.length > 0 && b.requests.length > 0, 'both replicas got requests');
  assert.deepEqual(
    replayed.map((r) => [r.name, r.method, r.code, r.error]),
    [
      ['make id', 'POST', 200, undefined],
      ['get by id', 'GET', 200, undefined],
      ['basic', 'GET', 200, undefined],
    ],
  );
  const failed = replayed.flatMap((r) => r.assertions.filter((x) => !x.passed).map((x) => `${r.name} › ${x.name}: ${x.message}`));
  assert.deepEqual(failed, ['get by id › this one fails: expected 200 to deeply equal 201']);

  // newman on the same collection judges every test the same way
  const viaNewman = await runPostmanCollection({ collection: collectionFile, environment: environmentFile, vars: { suffix: '7' }, resolveUrl: resolver() });
  assert.deepEqual(outcomes(replayed), outcomes(viaNewman.executions));
  assert.deepEqual(viaNewman.failures, [{ name: 'get by id › this one fails', message: 'expected 200 to deeply equal 201' }]);
});

test('replay of one folder; an unknown folder is named', async () => {
  const compiled = compileCollection({ collection: collectionFile, folder: 'keys', environment: environmentFile });
  assert.deepEqual(compiled.requests.map((r) => r.name), ['get by id', 'basic']);
  assert.throws(() => compileCollection({ collection: collectionFile, folder: 'nope' }), /no folder or request named "nope" in the collection \(folders: keys\)/);
});

test('a connection failure is an error on the request, not a throw', async () => {
  const compiled = compileCollection({ collection: collectionFile, folder: 'basic' });
  const dead = createUrlResolver(() => ({ echo: { kind: 'service', urls: ['http://127.0.0.1:1'], extra: {} } }));
  const [r] = await replayCollection(compiled, dead, new AbortController().signal);
  assert.equal(r.code, 0);
  assert.match(r.error ?? '', /^GET http:\/\/echo\/basic: .*ECONNREFUSED/);
  assert.deepEqual(r.assertions, []);
});
