import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { parseAppSpec } from '../../src/spec/load-app-spec';
import { TopasError } from '../../src/errors';
import { databaseEntry, serviceEntry, healBackoffMs, mergeReplicaLogs, OpQueue, resolveValue, RoundRobin, servingPool, sutErrors, type AddressView } from '../../src/sut';

const spec = parseAppSpec(
  `
name: core
services:
  - name: api
    command: ["node", "x.js"]
    port: 8080
    ports: { grpc: 9090 }
    env: { DATABASE_URL: "\${db.url}" }
databases:
  - name: db
    port: 5432
    credentials: { user: "ad min", password: "p@ss", dbname: testdb }
`,
  '/tmp/topas.yaml',
);

describe('sut core: references through an address view', () => {
  const network: AddressView = {
    service: (name, port) => ({ host: name, port: port === 'main' ? 8080 : 9090 }),
    database: (name) => ({ host: name, port: 5432 }),
  };
  test('every field of a service and a database, credentials encoded in the URL', () => {
    assert.equal(
      resolveValue(spec, network, '${api.url} ${api.host}:${api.port} ${api.ports.grpc} ${api.name} ${db.url} ${db.host} ${db.port} ${db.user} ${db.dbname}'),
      'http://api:8080 api:8080 9090 api postgres://ad%20min:p%40ss@db:5432/testdb db 5432 ad min testdb',
    );
  });
  test('what names nothing is INVALID_APP_SPEC; a service with no replica running is SUT_START_FAILED', () => {
    const code = (v: string, view = network) => {
      try {
        resolveValue(spec, view, v);
      } catch (e) {
        return `${(e as TopasError).code}: ${(e as Error).message}`;
      }
      return 'resolved';
    };
    assert.equal(code('${nope.url}'), 'INVALID_APP_SPEC: reference ${nope.url}: no service or database named "nope"');
    assert.equal(code('${api.ports.http}'), 'INVALID_APP_SPEC: reference ${api.ports.http}: service api has no field "ports.http"');
    assert.equal(code('${db.schema}'), 'INVALID_APP_SPEC: reference ${db.schema}: databases have no field "schema"');
    const none: AddressView = { service: () => undefined, database: () => undefined };
    assert.equal(code('${api.url}', none), 'SUT_START_FAILED: reference ${api.url}: service api has no running replica');
    assert.equal(code('${db.url}', none), 'SUT_NOT_UP: database db is not running');
  });
});

describe('sut core: policies', () => {
  test('heal backoff: 500 ms, doubling, at most 10 s', () => {
    assert.deepEqual([1, 2, 3, 4, 5, 6, 10].map(healBackoffMs), [500, 1000, 2000, 4000, 8000, 10_000, 10_000]);
  });
  test('round robin over the ready replicas, else the running ones', () => {
    const rr = new RoundRobin();
    assert.deepEqual([1, 2, 3].map(() => rr.pick(servingPool(['a', 'b'], ['a', 'b', 'c']))), ['a', 'b', 'a']);
    assert.equal(rr.pick(servingPool([], ['c'])), 'c');
    assert.equal(rr.pick([]), undefined);
  });
  test('one log format: one replica as is, several prefixed [name-i], each tailed', () => {
    assert.equal(mergeReplicaLogs('api', [{ index: 1, text: 'a\nb\nc\n' }], 2), 'b\nc');
    assert.equal(mergeReplicaLogs('api', [{ index: 1, text: 'a\nb\n' }, { index: 2, text: '' }, { index: 3, text: 'x\n' }], 1), '[api-1] b\n[api-3] x');
  });
  test('operations on one service run one after another', async () => {
    const q = new OpQueue();
    const order: string[] = [];
    const slow = q.run(async () => {
      await new Promise((r) => setTimeout(r, 30));
      order.push('first');
    });
    const failing = q.run(async () => {
      order.push('second');
      throw new Error('boom');
    });
    const third = q.run(async () => order.push('third'));
    assert.equal(q.busy, 3);
    await slow;
    await assert.rejects(failing, /boom/);
    await third;
    await q.idle();
    assert.deepEqual(order, ['first', 'second', 'third']);
    assert.equal(q.busy, 0);
  });
  test('endpoint map entries: a URL and named-port address per replica; a database URL only while it runs', () => {
    const e = serviceEntry([{ p: 1 }, { p: 2 }], ['grpc'], (r) => `http://h:${r.p}`, (r, n) => `h:${r.p}${n}`);
    assert.deepEqual(e, { kind: 'service', urls: ['http://h:1', 'http://h:2'], extra: { grpc: ['h:1grpc', 'h:2grpc'] } });
    const info = { host: 'h', port: 5, user: 'u', password: 'p w', dbname: 'd' };
    assert.deepEqual(databaseEntry(info).urls, ['postgres://u:p%20w@h:5/d']);
    assert.deepEqual(databaseEntry(info, false).urls, []);
  });
  test('the error table: one code and text per mistake', () => {
    assert.equal(sutErrors.unknownTarget('core', 'nope', ['api', 'db']).code, 'SCENARIO_FAILED');
    assert.equal(sutErrors.unknownPort('api', 'http', ['grpc']).hint, 'named ports: grpc');
    assert.equal(sutErrors.noRunningReplica('api', 3, [1, 2]).message, 'service api has no running replica 3 (running: 1, 2)');
    assert.equal(sutErrors.badReplicaCount('scale', 'api', -1).code, 'SCENARIO_FAILED');
  });
});
