import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { shardUnits } from '../../src/run/run-service';
import { lostShareResults, resummarize } from '../../src/run/lost-shares';
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

  test('a runner pod that ended without a result is a lost share (its instances fail, exit 1), not the run error; the others still count', () => {
    const out = merge([
      { name: 'tr-0', result: { state: 'passed', exitCode: 0, results: [{ runId: 'a' }] } },
      { name: 'tr-1', pod: 'x-1-abcde', failure: 'exited (137) without a result', failedAtMs: 1234 },
    ]);
    assert.equal(out.results.length, 1);
    assert.equal(out.error, undefined);
    assert.deepEqual(out.lost, [{ shard: { index: 1, count: 2 }, runner: 'runner pod x-1-abcde (share 2 of 2)', reason: 'exited (137) without a result', lostAtMs: 1234 }]);
  });

  test("a lost share's instances: an error result each, naming the runner and every instance it ran; what arrived is kept; the playbook summary counts them", () => {
    const mk = (name: string, id: string) => ({ runId: name, file: '/w/pb.lua', baseDir: '/w', name: `pb/${name}`, timeoutMs: 1000, env: {}, instance: { id, role: id.split('-')[0], index: 1, count: 1, params: {} }, endpoints: {}, memoryLimitBytes: 1, continueOnFailure: false });
    const tasks = [mk('w#1', 'w-1'), mk('w#2', 'w-2'), mk('l#1', 'l-1')];
    const unit = { kind: 'playbook' as const, playbook: { name: 'pb', file: '/w/pb.yaml', roles: [{ name: 'w', script: '/w/pb.lua', instances: 2, params: {} }, { name: 'l', script: '/w/pb.lua', instances: 1, params: {} }], shaping: [] } as never, key: 'p1', tasks, instances: tasks.map((t) => t.instance.id) };
    const share = shardUnits([unit], { index: 1, count: 2 });
    const lost = { shard: { index: 1, count: 2 }, runner: 'runner pod p-1-xyz (share 2 of 2)', reason: 'exited (137) without a result', lostAtMs: Date.parse('2026-01-01T00:00:05Z') };
    const out = lostShareResults(share, lost, [], Date.parse('2026-01-01T00:00:00Z'));
    assert.deepEqual(out.map((r) => [r.name, r.state]), [['pb/w#2', 'error']]);
    assert.equal(out[0].durationMs, 5000);
    assert.equal(out[0].error?.message, 'runner pod p-1-xyz (share 2 of 2) was lost (exited (137) without a result); the 1 instance(s) it ran were stopped with it: pb/w#2');
    const arrived = [{ ...out[0], name: 'pb/w#1', state: 'passed' as const, error: undefined }, { ...out[0], name: 'pb/l#1', instance: tasks[2].instance, state: 'passed' as const, error: undefined }];
    const [summary] = resummarize([], [unit], [...arrived, ...out], '/w');
    assert.equal(summary.state, 'error');
    assert.deepEqual(summary.roles, [{ name: 'w', ok: 1, total: 2 }, { name: 'l', ok: 1, total: 1 }]);
    assert.equal(summary.firstFailure?.instance, 'w-2');
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
