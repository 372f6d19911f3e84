import { describe, test } from 'node:test';
import assert from 'node:assert/strict';

/**
 * One behaviour suite for every way instances reach a playbook's sync group:
 * the rpc path (workers -> coordinator -> SyncBroker, src/run/rpc-router.ts)
 * and the network path (workers -> SyncClient -> sync server -> SyncBroker).
 * Instances call as scenarios do (`sync.barrier` with its arguments); the
 * coordinator reports ended instances and closes the group.
 */
export interface SyncHarness {
  /** a scenario's `sync.*` call from `instance` */
  call(instance: string, method: string, args: unknown[]): Promise<unknown>;
  /** the coordinator: this instance ended (`it finished`, or why it failed) */
  ended(instance: string, reason: string): Promise<void> | void;
  /** the run is stopping: every pending wait fails */
  close(reason: string): Promise<void> | void;
  dispose(): Promise<void> | void;
}

export type MakeHarness = (instances: string[], defaultTimeoutMs: number) => Promise<SyncHarness>;

const settle = (ms = 30) => new Promise((r) => setTimeout(r, ms));
/** a call whose rejection the test asserts later: not an unhandled rejection meanwhile */
const later = <T>(p: Promise<T>): Promise<T> => {
  p.catch(() => undefined);
  return p;
};

export function syncBehaviourSuite(name: string, make: MakeHarness): void {
  describe(`sync behaviour: ${name}`, () => {
    const withHarness = (instances: string[], timeoutMs: number, fn: (h: SyncHarness) => Promise<void>) => async () => {
      const h = await make(instances, timeoutMs);
      try {
        await fn(h);
      } finally {
        await h.dispose();
      }
    };

    test(
      'a barrier releases everyone once count instances arrived',
      withHarness(['a', 'b', 'c'], 5000, async (h) => {
        const order: string[] = [];
        const pa = h.call('a', 'sync.barrier', ['start', 3]).then(() => order.push('a'));
        const pb = h.call('b', 'sync.barrier', ['start', 3]).then(() => order.push('b'));
        await settle();
        assert.deepEqual(order, []);
        await h.call('c', 'sync.barrier', ['start', 3]);
        await Promise.all([pa, pb]);
        assert.deepEqual(order.sort(), ['a', 'b']);
      }),
    );

    test(
      'a barrier of 12 instances called at once releases all 12, and can be used again',
      withHarness(Array.from({ length: 12 }, (_, i) => `i-${i + 1}`), 5000, async (h) => {
        const ids = Array.from({ length: 12 }, (_, i) => `i-${i + 1}`);
        for (let round = 0; round < 2; round++) await Promise.all(ids.map((id) => h.call(id, 'sync.barrier', ['round', 12])));
      }),
    );

    test(
      'a barrier that cannot complete times out naming who never arrived',
      withHarness(['client-1', 'client-2', 'chaos-1'], 5000, async (h) => {
        await assert.rejects(h.call('client-1', 'sync.barrier', ['go', 3, 100]), /never arrived: client-2, chaos-1/);
      }),
    );

    test(
      'counts that disagree are refused',
      withHarness(['a', 'b'], 5000, async (h) => {
        const first = later(h.call('a', 'sync.barrier', ['x', 2, 1000]));
        await settle();
        await assert.rejects(h.call('b', 'sync.barrier', ['x', 3]), /count 3 differs from 2/);
        await h.ended('b', 'failed: gone');
        await assert.rejects(first, /cannot complete/);
      }),
    );

    test(
      'an instance that dies before a barrier fails waiters at once, naming it',
      withHarness(['x', 'y'], 60_000, async (h) => {
        const t0 = Date.now();
        const p = later(h.call('x', 'sync.barrier', ['go', 2, 60_000]));
        await settle();
        await h.ended('y', 'error: boom');
        await assert.rejects(p, /cannot complete.*y \(error: boom\)/);
        assert.ok(Date.now() - t0 < 5000, 'failed at once, not at the timeout');
      }),
    );

    test(
      'signals count and wait until a number is reached',
      withHarness(['a'], 1000, async (h) => {
        const w = h.call('a', 'sync.wait', ['ready', 2]);
        assert.equal(await h.call('a', 'sync.signal', ['ready']), 1);
        assert.equal(await h.call('a', 'sync.signal', ['ready']), 2);
        assert.equal(await w, 2);
        await assert.rejects(h.call('a', 'sync.wait', ['other', 1, 50]), /timed out/);
      }),
    );

    test(
      'a subscription sees past and future values in order, tables intact',
      withHarness(['a', 'b'], 1000, async (h) => {
        await h.call('a', 'sync.publish', ['addr', { n: 1, list: [1, 'two', { three: true }] }]);
        const sub = (await h.call('b', 'sync.subscribe', ['addr'])) as number;
        assert.deepEqual(await h.call('b', 'sync.next', [sub]), { n: 1, list: [1, 'two', { three: true }] });
        const later = h.call('b', 'sync.next', [sub]);
        await settle();
        await h.call('a', 'sync.publish', ['addr', { n: 2 }]);
        assert.deepEqual(await later, { n: 2 });
        await assert.rejects(h.call('b', 'sync.next', [sub, 30]), /no new value/);
      }),
    );

    test(
      'close fails pending waits',
      withHarness(['a', 'b'], 60_000, async (h) => {
        const p = later(h.call('a', 'sync.barrier', ['x', 2]));
        await settle();
        await h.close('run stopped');
        await assert.rejects(p, (err: Error & { code?: string }) => err.code === 'INTERRUPTED');
      }),
    );
  });
}
