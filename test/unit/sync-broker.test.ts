import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { SyncBroker } from '../../src/sync/sync-broker';

describe('SyncBroker', () => {
  test('a barrier releases everyone once count instances arrived', async () => {
    const b = new SyncBroker(['a', 'b', 'c'], 5000);
    const order: string[] = [];
    const pa = b.barrier('a', 'start', 3).then(() => order.push('a'));
    const pb = b.barrier('b', 'start', 3).then(() => order.push('b'));
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(order, []);
    await b.barrier('c', 'start', 3);
    await Promise.all([pa, pb]);
    assert.deepEqual(order.sort(), ['a', 'b']);
  });

  test('a barrier that cannot complete times out naming who never arrived', async () => {
    const b = new SyncBroker(['client-1', 'client-2', 'chaos-1'], 5000);
    await assert.rejects(b.barrier('client-1', 'go', 3, 100), /never arrived: client-2, chaos-1/);
  });

  test('an instance that dies before a barrier fails waiters at once, naming it', async () => {
    const b = new SyncBroker(['x', 'y'], 60_000);
    const p = b.barrier('x', 'go', 2, 60_000);
    b.instanceEnded('y', 'error: boom');
    await assert.rejects(p, /cannot complete.*y \(error: boom\)/);
  });

  test('signals count and wait until a number is reached', async () => {
    const b = new SyncBroker(['a'], 1000);
    const w = b.waitSignal('a', 'ready', 2);
    assert.equal(b.signal('a', 'ready'), 1);
    assert.equal(b.signal('a', 'ready'), 2);
    assert.equal(await w, 2);
    await assert.rejects(b.waitSignal('a', 'other', 1, 50), /timed out/);
  });

  test('a subscription sees past and future values in order', async () => {
    const b = new SyncBroker(['a'], 1000);
    b.publish('a', 'addr', { n: 1 });
    const sub = b.subscribe('a', 'addr');
    assert.deepEqual(await b.next('a', sub), { n: 1 });
    const later = b.next('a', sub);
    b.publish('a', 'addr', { n: 2 });
    assert.deepEqual(await later, { n: 2 });
    await assert.rejects(b.next('a', sub, 30), /no new value/);
  });

  test('close fails pending waits', async () => {
    const b = new SyncBroker(['a', 'b'], 60_000);
    const p = b.barrier('a', 'x', 2);
    b.close('run stopped');
    await assert.rejects(p, /run stopped/);
  });
});
