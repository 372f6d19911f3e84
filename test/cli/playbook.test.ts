import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { cli } from '../helpers/cli';

describe('playbooks: many instances coordinated through sync', () => {
  test('50 clients and 1 chaos instance meet at barriers and exchange values', async () => {
    const r = await cli(['run', 'fixtures/playbooks/meet/meet.yaml', '--json']);
    assert.equal(r.code, 0, r.stderr.slice(-3000));
    const report = JSON.parse(r.stdout);
    assert.equal(report.results.length, 51);
    assert.deepEqual(report.playbooks[0].roles, [
      { name: 'client', ok: 50, total: 50 },
      { name: 'chaos', ok: 1, total: 1 },
    ]);
  });

  test('--workers 3 --spread processes: the same 51 instances placed over 3 worker processes meet at barriers of all 51', async () => {
    const r = await cli(['run', 'fixtures/playbooks/meet/meet.yaml', '--workers', '3', '--spread', 'processes', '--json']);
    assert.equal(r.code, 0, r.stderr.slice(-3000));
    assert.match(r.stderr, /scenarios run in 3 worker processes \(pids \d+, \d+, \d+\)/);
    const pids = /pids (\d+), (\d+), (\d+)/.exec(r.stderr)!.slice(1).map(Number);
    assert.equal(new Set([...pids, process.pid]).size, 4, 'three processes besides this one');
    const report = JSON.parse(r.stdout);
    assert.equal(report.results.length, 51);
    // barriers "ready" and "done" count every instance (total: 51): all passed means all met there
    assert.deepEqual(report.playbooks[0].roles, [
      { name: 'client', ok: 50, total: 50 },
      { name: 'chaos', ok: 1, total: 1 },
    ]);
    // the worker processes are gone
    for (const pid of pids) assert.throws(() => process.kill(pid, 0), /ESRCH/);
  });

  test('an instance that fails before a barrier fails the run at once, naming it, and stops the others', async (t) => {
    const r = await cli(['run', 'fixtures/playbooks/meet/meet-failing.yaml', '--json']);
    t.diagnostic(`elapsed ${r.elapsedMs} ms (barrier timeout 30 s)`);
    assert.equal(r.code, 1, r.stderr.slice(-3000));
    const report = JSON.parse(r.stdout);
    const pb = report.playbooks[0];
    assert.equal(pb.firstFailure.instance, 'client-7');
    assert.match(pb.firstFailure.error.message, /gave up before the barrier/);
    // the others did not pass: they were stopped (or their barrier failed naming client-7)
    const others = report.results.filter((x: { instance: { id: string } }) => x.instance.id !== 'client-7');
    assert.ok(others.every((x: { state: string }) => x.state !== 'passed'));
    assert.ok(others.some((x: { error?: { message: string } }) => /client-7/.test(x.error?.message ?? '')));
    // the text report groups by role
    const table = await cli(['run', 'fixtures/playbooks/meet/meet-failing.yaml']);
    assert.match(table.stdout, /client[^\n]*0\/50|client[^\n]*0 \/ 50/);
  });
});
