import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type * as k8s from '@kubernetes/client-node';
import type { Cluster } from '../../plugins/kubernetes/src/cluster';
import { eventLine, eventProblems, recentEvents } from '../../plugins/kubernetes/src/events';
import { poll, sleep } from '../../plugins/kubernetes/src/wait';
import { TopasError } from '../../src/errors';

const NOW = Date.parse('2026-12-02T12:00:00Z');

function ev(name: string, kind: string, type: string, reason: string, message: string, secondsAgo: number, count = 1): k8s.CoreV1Event {
  return { metadata: { name: `${name}.${reason}` }, involvedObject: { kind, name }, type, reason, message, count, lastTimestamp: new Date(NOW - secondsAgo * 1000) } as k8s.CoreV1Event;
}

/** A cluster whose only API is listing events, answering a `type=` field selector as the API server does. */
function clusterWith(events: k8s.CoreV1Event[], fail = false): Cluster {
  const core = {
    listNamespacedEvent: async (req: { namespace: string; fieldSelector?: string }) => {
      if (fail) throw new Error('forbidden');
      const type = /^type=(\w+)$/.exec(req.fieldSelector ?? '')?.[1];
      return { items: events.filter((e) => !type || e.type === type) };
    },
  };
  return { namespace: 'tests', core } as unknown as Cluster;
}

describe('kubernetes events in failure messages', () => {
  const events = [
    ev('shop-api-abc123', 'Deployment', 'Normal', 'ScalingReplicaSet', 'Scaled up replica set shop-api-abc123-7d9f to 1', 40),
    ev('shop-api-abc123-7d9f-x2k4q', 'Pod', 'Warning', 'Unhealthy', 'Readiness probe failed: HTTP probe failed with statuscode: 404', 2, 12),
    ev('shop-api-abc123-7d9f-x2k4q', 'Pod', 'Warning', 'BackOff', 'Back-off restarting failed container', 9),
    // another component and another run: not this one's
    ev('shop-api-2-abc123-55c-q', 'Pod', 'Warning', 'Unhealthy', 'not mine', 1),
    ev('shop-api-ffffff-66d-q', 'Pod', 'Warning', 'Unhealthy', 'other run', 1),
  ];

  test('the warnings of the component, oldest first; its object and the pods named after it, no other component or run', async () => {
    const got = await recentEvents(clusterWith(events), ['shop-api-abc123']);
    assert.deepEqual(
      got.map((e) => e.reason),
      ['BackOff', 'Unhealthy'],
    );
  });

  test('without warnings, the normal events', async () => {
    const got = await recentEvents(clusterWith(events.filter((e) => e.type === 'Normal')), ['shop-api-abc123']);
    assert.deepEqual(
      got.map((e) => e.reason),
      ['ScalingReplicaSet'],
    );
  });

  test('a line names type, reason, object, message, count and age', () => {
    assert.equal(eventLine(events[1], NOW), 'Warning Unhealthy pod/shop-api-abc123-7d9f-x2k4q: Readiness probe failed: HTTP probe failed with statuscode: 404 (x12, 2s ago)');
    assert.equal(eventLine(events[0], NOW), 'Normal ScalingReplicaSet deployment/shop-api-abc123: Scaled up replica set shop-api-abc123-7d9f to 1 (40s ago)');
  });

  test('as problems; an API error gives none rather than hiding the failure it explains', async () => {
    const problems = await eventProblems(clusterWith(events), ['shop-api-abc123'], 1);
    assert.equal(problems.length, 1);
    assert.equal(problems[0].path, 'event');
    assert.match(problems[0].message, /^Warning Unhealthy pod\/shop-api-abc123-7d9f-x2k4q: Readiness probe failed/);
    assert.deepEqual(await eventProblems(clusterWith(events, true), ['shop-api-abc123']), []);
  });
});

describe('kubernetes plugin waits', () => {
  test('poll returns the first value, retries errors when told to, and ends with onTimeout at the deadline', async () => {
    let n = 0;
    assert.equal(await poll(async () => (++n >= 3 ? 'done' : undefined), { timeoutMs: 10_000, intervalMs: 1, onTimeout: () => new Error('late') }), 'done');
    let m = 0;
    const flaky = async () => {
      if (++m < 3) throw new Error(`flake ${m}`);
      return true;
    };
    assert.equal(await poll(flaky, { timeoutMs: 10_000, intervalMs: 1, retryErrors: true, onTimeout: () => new Error('late') }), true);
    await assert.rejects(
      poll(async () => {
        throw new Error('boom');
      }, { timeoutMs: 10_000, intervalMs: 1, onTimeout: () => new Error('late') }),
      /boom/,
    );
    await assert.rejects(
      poll(async () => {
        throw new Error('still down');
      }, { timeoutMs: 20, intervalMs: 5, retryErrors: true, onTimeout: (last) => new Error(`late after ${(last as Error).message}`) }),
      /late after still down/,
    );
  });

  // the interval is ten minutes: only an abort that ends the sleep finishes within the test's timeout
  test('an abort ends a wait at once, as INTERRUPTED, not after the interval', { timeout: 120_000 }, async () => {
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 20);
    await assert.rejects(
      poll(async () => false, { timeoutMs: 600_000, intervalMs: 600_000, signal: ac.signal, onTimeout: () => new Error('late') }),
      (err: unknown) => err instanceof TopasError && err.code === 'INTERRUPTED',
    );
    await assert.rejects(sleep(600_000, AbortSignal.abort()), (err: unknown) => err instanceof TopasError && err.code === 'INTERRUPTED');
  });
});
