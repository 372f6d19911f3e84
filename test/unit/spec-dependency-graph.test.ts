import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { TopasError } from '../../src/errors';
import type { AppSpec, DatabaseSpec, ServiceSpec } from '../../src/spec/app-spec';
import { dependencyOrder, findCycle, startInDependencyOrder } from '../../src/spec/dependency-graph';

function service(name: string, dependsOn: string[] = []): ServiceSpec {
  return { name, command: ['x'], port: 80, ports: {}, replicas: 1, env: {}, ready: { kind: 'tcp', timeoutMs: 1000 }, dependsOn };
}

function database(name: string): DatabaseSpec {
  return { name, engine: 'postgres', port: 5432, credentials: { user: 'u', password: 'p', dbname: name }, ready: { timeoutMs: 1000 } };
}

function spec(services: ServiceSpec[], databases: DatabaseSpec[] = []): AppSpec {
  return { name: 'app', file: '/x/topas.yaml', dir: '/x', services, databases };
}

/** A start whose completion the test controls. */
class Gate {
  readonly started: string[] = [];
  private readonly pending = new Map<string, { resolve: () => void; reject: (e: unknown) => void }>();
  private waiters: { name: string; resolve: () => void }[] = [];

  start = (name: string): Promise<void> => {
    this.started.push(name);
    for (const w of this.waiters.filter((w) => w.name === name)) w.resolve();
    this.waiters = this.waiters.filter((w) => w.name !== name);
    return new Promise<void>((resolve, reject) => this.pending.set(name, { resolve, reject }));
  };

  /** Resolves once `name` has been started (immediately if it already was). */
  whenStarted(name: string): Promise<void> {
    if (this.started.includes(name)) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ name, resolve }));
  }

  finish(name: string, error?: Error): void {
    const p = this.pending.get(name);
    assert.ok(p, `${name} was not started`);
    this.pending.delete(name);
    if (error) p.reject(error);
    else p.resolve();
  }
}

/** Let every queued promise callback run. */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('dependency graph', () => {
  test('findCycle returns a closed path, or undefined', () => {
    assert.deepEqual(findCycle({ api: ['worker'], worker: ['db', 'api'], db: [] }), ['api', 'worker', 'api']);
    assert.deepEqual(findCycle(new Map([['a', ['a']]])), ['a', 'a']);
    assert.equal(findCycle({ a: ['b'], b: ['c'], c: [], d: ['c', 'missing'] }), undefined);
  });

  test('dependencyOrder puts everything after its dependencies, spec order otherwise', () => {
    const s = spec([service('web', ['api']), service('api', ['db', 'cache']), service('cache')], [database('db')]);
    assert.deepEqual(dependencyOrder(s), ['db', 'cache', 'api', 'web']);
    assert.throws(() => dependencyOrder(spec([service('a', ['b']), service('b', ['a'])])), (e: unknown) => e instanceof TopasError && e.code === 'INVALID_APP_SPEC');
  });

  test('starts each node as soon as its own dependencies are up, not level by level', { timeout: 20_000 }, async () => {
    // db1 -> api, db2 -> web: api must not wait for db2.
    const s = spec([service('api', ['db1']), service('web', ['db2']), service('edge', ['api', 'web'])], [database('db1'), database('db2')]);
    const gate = new Gate();
    const done = startInDependencyOrder(s, gate.start);
    await settle();
    assert.deepEqual(gate.started, ['db1', 'db2']);
    gate.finish('db1');
    await gate.whenStarted('api');
    assert.deepEqual(gate.started, ['db1', 'db2', 'api'], 'api started while db2 is still starting');
    gate.finish('api');
    await settle();
    assert.ok(!gate.started.includes('edge'), 'edge waits for web too');
    gate.finish('db2');
    await gate.whenStarted('web');
    gate.finish('web');
    await gate.whenStarted('edge');
    gate.finish('edge');
    await done;
    assert.deepEqual(gate.started, ['db1', 'db2', 'api', 'web', 'edge']);
  });

  test('after a failure nothing new starts, in-flight starts settle, then the first error is thrown', { timeout: 20_000 }, async () => {
    const s = spec([service('api', ['db1']), service('web', ['db2']), service('slow')], [database('db1'), database('db2')]);
    const gate = new Gate();
    let rejected: unknown;
    const done = startInDependencyOrder(s, gate.start).catch((e: unknown) => {
      rejected = e;
    });
    await settle();
    assert.deepEqual(gate.started, ['db1', 'db2', 'slow']);
    const boom = new Error('db1 failed');
    gate.finish('db1', boom);
    await settle();
    assert.equal(rejected, undefined, 'must wait for db2 and slow to settle');
    gate.finish('db2');
    gate.finish('slow', new Error('second failure'));
    await done;
    assert.equal(rejected, boom);
    assert.deepEqual(gate.started, ['db1', 'db2', 'slow'], 'api and web were never launched');
  });

  test('a synchronous throw in startOne counts as a failure', async () => {
    const s = spec([service('a'), service('b', ['a'])]);
    await assert.rejects(
      startInDependencyOrder(s, (name) => {
        if (name === 'a') throw new Error('sync');
        return Promise.resolve();
      }),
      /sync/,
    );
  });

  test('abort stops launching and rejects with INTERRUPTED once in-flight starts settle', { timeout: 20_000 }, async () => {
    const s = spec([service('a'), service('b', ['a'])]);
    const gate = new Gate();
    const ac = new AbortController();
    let rejected: unknown;
    const done = startInDependencyOrder(s, gate.start, { signal: ac.signal }).catch((e: unknown) => {
      rejected = e;
    });
    await settle();
    ac.abort();
    await settle();
    assert.equal(rejected, undefined);
    gate.finish('a');
    await done;
    const err = rejected as unknown; // (assert.equal above narrowed it to undefined)
    assert.ok(err instanceof TopasError && err.code === 'INTERRUPTED');
    assert.deepEqual(gate.started, ['a']);
  });

  test('an empty spec starts nothing and resolves', async () => {
    await startInDependencyOrder(spec([]), () => assert.fail('nothing to start'));
  });
});
