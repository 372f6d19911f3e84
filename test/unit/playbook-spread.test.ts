import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { shardUnits } from '../../src/run/run-service';
import { merge, mergePlaybookSummaries, spreadJobSpec } from '../../plugins/kubernetes/src/spread-runner';
import { syncObjects, SYNC_PORT } from '../../plugins/kubernetes/src/sync-deployment';
import type { ScenarioTask } from '../../src/run/scenario-types';
import type { Playbook } from '../../src/playbook/playbook';

const task = (id: string) => ({ runId: id, instance: { id } }) as unknown as ScenarioTask;

describe('a run spread over runners', () => {
  test('shares deal scenarios and instances round-robin; a playbook keeps every instance id; each runs once', () => {
    const units = [
      { kind: 'scenario' as const, task: task('s1') },
      { kind: 'playbook' as const, playbook: {} as Playbook, key: 'p2', tasks: ['a-1', 'a-2', 'a-3', 'a-4', 'a-5'].map(task), instances: ['a-1', 'a-2', 'a-3', 'a-4', 'a-5'] },
      { kind: 'scenario' as const, task: task('s3') },
    ];
    const shares = [0, 1, 2].map((index) => shardUnits(units, { index, count: 3 }));
    const ran = shares.map((s) => s.flatMap((u) => (u.kind === 'scenario' ? [u.task.runId] : u.tasks.map((t) => t.runId))));
    assert.deepEqual(ran, [['s1', 'a-3', 's3'], ['a-1', 'a-4'], ['a-2', 'a-5']]);
    for (const s of shares) for (const u of s) if (u.kind === 'playbook') assert.equal(u.instances.length, 5);
    // more runners than work: a share may be empty
    assert.deepEqual(shardUnits([{ kind: 'scenario', task: task('only') }], { index: 1, count: 2 }), []);
  });

  test("playbook summaries of the runners add up; the failure named is the cause, not an instance stopped because of it", () => {
    const merged = mergePlaybookSummaries([
      { name: 'pb', file: 'pb.yaml', state: 'interrupted', roles: [{ name: 'w', ok: 0, total: 4 }, { name: 'l', ok: 0, total: 1 }], firstFailure: { instance: 'w-2', error: { name: 'E', message: 'instance w-5 failed' } } },
      { name: 'pb', file: 'pb.yaml', state: 'failed', roles: [{ name: 'w', ok: 0, total: 4 }, { name: 'l', ok: 0, total: 0 }], firstFailure: { instance: 'w-5', error: { name: 'E', message: 'gave up' } } },
      { name: 'pb', file: 'pb.yaml', state: 'passed', roles: [{ name: 'w', ok: 3, total: 3 }, { name: 'l', ok: 0, total: 0 }] },
    ]);
    assert.deepEqual(merged, [{ name: 'pb', file: 'pb.yaml', state: 'failed', roles: [{ name: 'w', ok: 3, total: 11 }, { name: 'l', ok: 0, total: 1 }], firstFailure: { instance: 'w-5', error: { name: 'E', message: 'gave up' } } }]);
  });

  test('a runner pod that ended without a result is the run error; the others still count', () => {
    const out = merge([
      { name: 'tr-0', result: { state: 'passed', exitCode: 0, results: [{ runId: 'a' }] } },
      { name: 'tr-1', failure: 'runner pod x (share 1) exited (137) without a result' },
    ]);
    assert.equal(out.results.length, 1);
    assert.equal(out.error?.code, 'RUNNER_FAILED');
    assert.match(out.error?.message ?? '', /share 1\) exited \(137\)/);
  });

  test('the sync Deployment: the runner image running `topas sync-server`, token from the run Secret, a Service on the same port, reached by DNS name', () => {
    const { deployment, service, url } = syncObjects({ app: 'shop', runId: 'r1', namespace: 'ns1', labels: { 'topas.dev/run': 'sut1', 'topas.dev/test-run': 'r1' }, image: 'topas-runner:1', secret: 'shop-runner-abc' });
    const c = deployment.spec!.template.spec!.containers[0];
    assert.deepEqual(c.command, ['topas', 'sync-server', '--host', '0.0.0.0', '--port', String(SYNC_PORT)]);
    assert.deepEqual(c.env?.find((e) => e.name === 'TOPAS_SYNC_TOKEN')?.valueFrom?.secretKeyRef, { name: 'shop-runner-abc', key: 'sync-token' });
    assert.equal(deployment.metadata?.labels?.['topas.dev/run'], 'sut1');
    assert.equal(deployment.metadata?.labels?.['topas.dev/component'], 'sync');
    assert.deepEqual(service.spec?.ports, [{ name: 'sync', port: SYNC_PORT, targetPort: SYNC_PORT }]);
    assert.deepEqual(service.spec?.selector, deployment.spec?.selector.matchLabels);
    assert.equal(url, `ws://${service.metadata!.name}.ns1.svc.cluster.local:${SYNC_PORT}`);
  });

  test('the Indexed Job: one pod per share, a failed pod fails its index only (the others go on)', () => {
    const spec = spreadJobSpec({ backoffLimit: 0, template: {} }, 3);
    assert.equal(spec.completionMode, 'Indexed');
    assert.equal(spec.completions, 3);
    assert.equal(spec.parallelism, 3);
    assert.equal(spec.backoffLimitPerIndex, 0);
    assert.equal(spec.backoffLimit, undefined);
  });

  test('merged: the failure named is the one that ended first, not an instance whose barrier failed because of it in another runner', () => {
    const r = (id: string, state: string, endSec: number, message?: string) => ({ runId: id, name: `pb/${id}`, instance: { id }, state, startedAt: '2026-01-01T00:00:00.000Z', durationMs: endSec * 1000, steps: [], checks: [], ...(message ? { error: { name: 'E', message } } : {}) });
    const out = merge([
      { name: 'tr-0', result: { state: 'failed', exitCode: 1, results: [r('w-1', 'failed', 5, 'sync.barrier("round") cannot complete: w-5 (failed) ended before arriving')], playbooks: [{ name: 'pb', file: 'pb.yaml', state: 'failed', roles: [{ name: 'w', ok: 0, total: 1 }], firstFailure: { instance: 'w-1' } }] } },
      { name: 'tr-1', result: { state: 'failed', exitCode: 1, results: [r('w-5', 'failed', 3, 'gave up'), r('w-2', 'interrupted', 4)], playbooks: [{ name: 'pb', file: 'pb.yaml', state: 'failed', roles: [{ name: 'w', ok: 0, total: 2 }], firstFailure: { instance: 'w-5' } }] } },
    ]);
    assert.equal(out.playbooks?.[0].firstFailure?.instance, 'w-5');
    assert.equal(out.playbooks?.[0].firstFailure?.error?.message, 'gave up');
    assert.deepEqual(out.playbooks?.[0].roles, [{ name: 'w', ok: 0, total: 3 }]);
  });
});
