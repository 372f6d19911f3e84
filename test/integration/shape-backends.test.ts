import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { cli, REPO_ROOT } from '../helpers/cli';

/**
 * The shaping acceptance items, driven from Lua scenarios through the CLI on
 * the local and the docker backends. The ±10% bounds live in the scenarios
 * (fixtures/shape/*.lua); here: every scenario passed, the shaping history is
 * in the run record, and the proxies and processes are gone afterwards.
 */
const FIXTURE = path.join(REPO_ROOT, 'fixtures', 'shape');
const SCENARIOS = ['latency.lua', 'db-latency.lua', 'db-down.lua', 'bandwidth.lua', 'http-fault.lua'].map((f) => path.join('fixtures', 'shape', f));
const PLAYBOOK = path.join('fixtures', 'shape', 'playbook.yaml');

function results(stderr: string): string[] {
  return stderr.split('\n').filter((l) => l.includes('RESULT '));
}

function runRecord(stdout: string): { shaping?: Array<{ service: string; change: { kind: string }; description: string }> } {
  const id = /run (\S+)\s+app shapeapp/.exec(stdout)?.[1];
  assert.ok(id, `no run id in:\n${stdout}`);
  return JSON.parse(fs.readFileSync(path.join(FIXTURE, '.topas', 'runs', id, 'run.json'), 'utf8'));
}

/** Open TCP listeners of this process (the shaping proxies are in-process). */
function listeningSockets(): number {
  const handles = (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles();
  return handles.filter((h) => h && (h as { constructor: { name: string } }).constructor.name === 'Server' && (h as { listening?: boolean }).listening).length;
}

for (const backend of ['local', 'docker'] as const) {
  describe(`shape on the ${backend} backend`, () => {
    before(() => {
      if (backend === 'docker') {
        execFileSync('bash', [path.join(REPO_ROOT, 'scripts', 'ensure-docker.sh')], { stdio: 'inherit' });
        execFileSync('bash', [path.join(REPO_ROOT, 'scripts', 'build-fixture-images.sh')], { stdio: 'inherit' });
      }
    });
    after(async () => {
      // nothing of this app may stay up (a failed assertion above must not leak a SUT)
      await cli(['down', '--app', path.join('fixtures', 'shape', 'topas.yaml')]);
    });

    test('latency, db latency, db down/reset, bandwidth and http_fault from Lua', async (t) => {
      const listenersBefore = listeningSockets();
      const r = await cli(['run', ...SCENARIOS, '--app', path.join('fixtures', 'shape', 'topas.yaml'), '--backend', backend, '--parallel', '1']);
      for (const line of results(r.stderr)) t.diagnostic(`${backend}: ${line.replace(/^.*RESULT /, '')}`);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.match(r.stdout, /5 passed, 0 failed/);
      assert.equal(results(r.stderr).length, 5, r.stderr);
      const rec = runRecord(r.stdout);
      const kinds = (rec.shaping ?? []).map((h) => `${h.service}:${h.change.kind}`);
      for (const k of ['api:latency', 'db:latency', 'db:down', 'db:reset', 'api:bandwidth', 'api:http_fault', 'api:reset']) assert.ok(kinds.includes(k), `${k} missing from ${kinds.join(' ')}`);
      assert.match(r.stderr, /shape: api -> latency 200ms/);
      assert.equal(listeningSockets(), listenersBefore, 'every shaping proxy is closed after the run');
    });

    test('a chaos role shapes on a sync signal; a playbook step shapes on another', async (t) => {
      const r = await cli(['run', PLAYBOOK, '--backend', backend]);
      for (const line of results(r.stderr)) t.diagnostic(`${backend}: ${line.replace(/^.*RESULT /, '')}`);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.match(r.stdout, /client 1\/1, chaos 1\/1/);
      assert.match(r.stderr, /shaping\[0\] on slow-db: db -> latency 200ms/);
    });
  });
}
