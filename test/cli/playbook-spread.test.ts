import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import { REPO_ROOT } from '../helpers/cli';

// A playbook spread over three runner processes on this machine, as a cluster
// spreads it over runner pods: each `topas run --shard I/3` runs a third of
// the instances, and all meet in one `topas sync-server` over a WebSocket.
const BIN = path.join(REPO_ROOT, 'bin', 'run.js');
const TOKEN = 'spread-test-token';

interface Outcome {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

function topas(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Outcome> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const child = spawn(process.execPath, [BIN, ...args], { cwd: REPO_ROOT, env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0', ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c));
    child.stderr.on('data', (c: Buffer) => (stderr += c));
    const timer = setTimeout(() => child.kill('SIGKILL'), 180_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, ms: Date.now() - t0 });
    });
  });
}

type Report = { results: Array<{ state: string; instance: { id: string }; error?: { message: string } }>; playbooks: Array<{ roles: unknown[]; firstFailure?: { instance: string; error?: { message: string } } }> };

describe('a playbook spread over runner processes, sync through `topas sync-server`', () => {
  let server: ChildProcess;
  let url = '';

  before(async () => {
    server = spawn(process.execPath, [BIN, 'sync-server', '--port', '0', '--json'], { cwd: REPO_ROOT, env: { ...process.env, TOPAS_SYNC_TOKEN: TOKEN } });
    url = await new Promise<string>((resolve, reject) => {
      let out = '';
      server.stdout!.on('data', (c: Buffer) => {
        out += c;
        if (out.includes('\n')) resolve((JSON.parse(out.split('\n')[0]) as { url: string }).url);
      });
      server.once('exit', (code) => reject(new Error(`sync-server exited ${code}`)));
    });
  });

  after(async () => {
    if (server.exitCode === null) {
      const exited = new Promise((r) => server.once('exit', r));
      server.kill('SIGTERM');
      await exited;
    }
  });

  // the runners of one run name it alike on the sync server
  const shards = (file: string, run: string) =>
    Promise.all([0, 1, 2].map((i) => topas(['run', file, '--sync-url', url, '--sync-run', run, '--shard', `${i}/3`, '--json'], { TOPAS_SYNC_TOKEN: TOKEN })));

  test('51 instances over 3 runners meet at barriers of all 51 and see every value', async (t) => {
    const runs = await shards('fixtures/playbooks/meet/meet.yaml', 'meet');
    for (const r of runs) assert.equal(r.code, 0, r.stderr.slice(-3000));
    const reports = runs.map((r) => JSON.parse(r.stdout) as Report);
    assert.deepEqual(reports.map((r) => r.results.length), [17, 17, 17]);
    const ids = new Set(reports.flatMap((r) => r.results.map((x) => x.instance.id)));
    assert.equal(ids.size, 51, 'each instance ran once, in one runner');
    // chaos-1 (the 51st) runs in the last shard; the clients' barriers of 51 needed it there
    assert.deepEqual(reports[2].playbooks[0].roles, [
      { name: 'client', ok: 16, total: 16 },
      { name: 'chaos', ok: 1, total: 1 },
    ]);
    t.diagnostic(`3 runners: ${runs.map((r) => `${(r.ms / 1000).toFixed(1)} s`).join(', ')}`);
  });

  test('an instance that fails in one runner fails the others at once, naming it', async () => {
    const runs = await shards('fixtures/playbooks/meet/meet-failing.yaml', 'meet-failing');
    for (const r of runs) assert.equal(r.code, 1, r.stderr.slice(-3000));
    const reports = runs.map((r) => JSON.parse(r.stdout) as Report);
    // client-7 is the 7th instance: runner 0 of 3 runs it
    assert.equal(reports[0].playbooks[0].firstFailure?.instance, 'client-7');
    assert.match(reports[0].playbooks[0].firstFailure?.error?.message ?? '', /gave up before the barrier/);
    for (const r of reports.slice(1)) {
      assert.ok(r.results.every((x) => x.state !== 'passed'));
      assert.ok(r.results.some((x) => /client-7/.test(x.error?.message ?? '')), JSON.stringify(r.results.map((x) => x.error?.message)));
    }
    // well before the barrier timeout (30 s)
    for (const r of runs) assert.ok(r.ms < 25_000, `runner took ${r.ms} ms`);
  });

  test('a runner without the token is refused and says where it could not connect', async () => {
    const r = await topas(['run', 'fixtures/playbooks/meet/meet.yaml', '--sync-url', url, '--shard', '0/3', '--json'], { TOPAS_SYNC_TOKEN: 'wrong' });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr + r.stdout, /cannot reach the sync server at ws:\/\/127\.0\.0\.1:\d+.*401/);
  });

  test('--shard must be I/N with I < N', async () => {
    const r = await topas(['run', 'fixtures/playbooks/meet/meet.yaml', '--shard', '3/3']);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /--shard: expected I\/N/);
  });
});
