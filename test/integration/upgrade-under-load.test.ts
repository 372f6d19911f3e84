import { describe, test, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { cli, REPO_ROOT } from '../helpers/cli';

/**
 * The playbook polls /version at 20 requests/s in one instance while another
 * rolls api (2 replicas) out to 1.1.0: no request may fail, and it ends on 1.1.0.
 */
for (const backend of ['local', 'docker']) {
  describe(`upgrade under load on the ${backend} backend`, () => {
    before(() => {
      if (backend !== 'docker') return;
      execFileSync('bash', [path.join(REPO_ROOT, 'scripts', 'ensure-docker.sh')], { stdio: 'inherit' });
      execFileSync('bash', [path.join(REPO_ROOT, 'scripts', 'build-fixture-images.sh')], { stdio: 'inherit' });
    });

    test('0 failed requests during the rollout, ends on 1.1.0', async (t) => {
      const r = await cli(['run', 'fixtures/playbooks/upgrade/upgrade-under-load.yaml', '--backend', backend, '--json']);
      const polls = r.stderr.match(/(\d+) polls, (\d+) failed/);
      t.diagnostic(polls ? polls[0] : 'no poll summary');
      assert.equal(r.code, 0, r.stderr.slice(-4000));
      assert.ok(polls, 'the poller printed no summary');
      assert.ok(Number(polls[1]) >= 20, `only ${polls[1]} polls: the rollout was not polled under load`);
      assert.equal(Number(polls[2]), 0);
      const report = JSON.parse(r.stdout);
      assert.deepEqual(report.playbooks[0].roles, [
        { name: 'poller', ok: 1, total: 1 },
        { name: 'upgrader', ok: 1, total: 1 },
      ]);
    });
  });
}
