import { test } from 'node:test';
import assert from 'node:assert/strict';
import { newestFirst, unseen, type TestRunObject } from '../../plugins/kubernetes/src/testrun';
import { runInfo } from '../../plugins/kubernetes/src/testrun-store';
import { queueLeaseName } from '../../plugins/kubernetes/src/run-queue';
import { RunMetrics, remoteMetrics } from '../../src/run/run-metrics';

const tr = (name: string, created: string, status: TestRunObject['status'] = {}): TestRunObject => ({
  apiVersion: 'topas.dev/v1alpha1',
  kind: 'TestRun',
  metadata: { name, creationTimestamp: created as unknown as Date },
  spec: { app: 'shop', runId: `id-${name}`, configMap: name, secret: name, specFile: 'topas.yaml', cwd: '.', targets: ['a.lua'], parallel: 1, timeoutMs: 1000, continueOnFailure: false },
  status,
});

test('unseen: the entries of a status window not handed on yet, and how many fell out of it unseen', () => {
  assert.deepEqual(unseen([1, 2, 3], 3, 0), { entries: [1, 2, 3], missed: 0, total: 3 });
  assert.deepEqual(unseen([1, 2, 3], 3, 2), { entries: [3], missed: 0, total: 3 });
  // a window of the last 3 of 10: 4 seen, so 5, 6, 7 were lost
  assert.deepEqual(unseen([8, 9, 10], 10, 4), { entries: [8, 9, 10], missed: 3, total: 10 });
  assert.deepEqual(unseen([8, 9, 10], 10, 9), { entries: [10], missed: 0, total: 10 });
  assert.deepEqual(unseen(undefined, undefined, 0), { entries: [], missed: 0, total: 0 });
});

test('newestFirst: by creation, then the runner start, then name', () => {
  const list = [tr('a', '2026-12-03T02:00:01Z'), tr('c', '2026-12-03T02:00:03Z'), tr('b', '2026-12-03T02:00:03Z', { startedAt: '2026-12-03T02:00:09Z' })];
  assert.deepEqual(list.sort(newestFirst).map((t) => t.metadata!.name), ['b', 'c', 'a']);
});

test('runInfo: a TestRun as a run: Pending says what it waits for; an ended one its verdict', () => {
  const waiting = runInfo(tr('w', '2026-12-03T02:00:01Z', { phase: 'Pending', waitingFor: 'shop-runner-abc' }));
  assert.equal(waiting.phase, 'Pending');
  assert.match(waiting.message ?? '', /waiting for TestRun shop-runner-abc/);
  assert.equal(runInfo(tr('n', '2026-12-03T02:00:01Z')).phase, 'Pending', 'no status yet: the runner has not started');
  const done = runInfo(tr('d', '2026-12-03T02:00:01Z', { phase: 'Passed', startedAt: 'x', result: { state: 'passed', exitCode: 0, results: [{ state: 'passed' }, { state: 'passed' }] } }));
  assert.deepEqual(done.outcome, { state: 'passed', scenarioStates: ['passed', 'passed'] });
  assert.equal(done.runId, 'id-d');
});

test('queueLeaseName: one valid object name per app, distinct for names that clean up alike', () => {
  const a = queueLeaseName('Shop_API');
  assert.match(a, /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
  assert.ok(a.length <= 63);
  assert.notEqual(queueLeaseName('shop-api'), queueLeaseName('shop_api'));
  assert.match(queueLeaseName('x'.repeat(200)), /^topas-queue-x{40}-[0-9a-f]{6}$/);
});

test('remoteMetrics: queued at first; a scenario starts at its first event and ends once; what never started leaves the queue', async () => {
  const m = new RunMetrics();
  const live = remoteMetrics(m, 3);
  const value = async (name: string) => {
    const metric = (await m.registry.getMetricsAsJSON()).find((x) => x.name === name)!;
    return metric.values.reduce((n, v) => n + (name === 'topas_test_duration_seconds' ? ((v as { metricName?: string }).metricName?.endsWith('_count') ? v.value : 0) : v.value), 0);
  };
  assert.equal(await value('topas_queue_depth'), 3);
  live.seen('s1');
  live.seen('s1');
  assert.equal(await value('topas_queue_depth'), 2);
  assert.equal(await value('topas_active_runners'), 1);
  live.ended('s1', 'passed', 1200);
  live.ended('s1', 'passed', 1200);
  // a scenario that ended without any event first
  live.ended('s2', 'failed', 300);
  assert.equal(await value('topas_active_runners'), 0);
  assert.equal(await value('topas_runs_total'), 2);
  assert.equal(await value('topas_test_duration_seconds'), 2);
  live.close();
  assert.equal(await value('topas_queue_depth'), 0);
});
