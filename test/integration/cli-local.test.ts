import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { cli, REPO_ROOT } from '../helpers/cli';

const BIN = path.join(REPO_ROOT, 'bin', 'run.js');

/** pids of every process descending from `root` (read from /proc). */
function descendants(root: number): number[] {
  const parents = new Map<number, number[]>();
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const list = parents.get(ppid) ?? [];
      list.push(Number(entry));
      parents.set(ppid, list);
    } catch {
      // the process ended while we looked
    }
  }
  const out: number[] = [];
  const walk = (pid: number) => {
    for (const c of parents.get(pid) ?? []) {
      out.push(c);
      walk(c);
    }
  };
  walk(root);
  return out;
}

function alive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/\) Z /.test(stat); // zombies are dead
  } catch {
    return false;
  }
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

describe('topas on the local backend, end to end', () => {
  test('the quickstart passes and prints the table', async () => {
    const r = await cli(['run', 'fixtures/quickstart/tests/quickstart.lua', '--app', 'fixtures/quickstart/topas.yaml', '--backend', 'local']);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.match(r.stdout, /quickstart\.lua/);
    assert.match(r.stdout, /1 passed, 0 failed/);
    assert.doesNotMatch(r.stderr + r.stdout, /s3cret|secret-password/);
  });

  test('up, ps, run reusing the SUT, down', async () => {
    const app = ['--app', 'fixtures/cli/with-app/topas.yaml'];
    const up = await cli(['up', ...app, '--backend', 'local', '--json']);
    try {
      assert.equal(up.code, 0, up.stderr);
      const upResult = JSON.parse(up.stdout);
      assert.equal(upResult.backend, 'local');
      const ps = await cli(['ps', ...app, '--json']);
      assert.equal(ps.code, 0, ps.stderr);
      const services = JSON.parse(ps.stdout).services;
      const api = services.find((s: { name: string }) => s.name === 'api');
      assert.equal(api.ready, true);
      const run = await cli(['run', 'fixtures/cli/with-app/smoke.lua', ...app]);
      assert.equal(run.code, 0, run.stderr + run.stdout);
      assert.match(run.stderr, /reusing the SUT/);
      // the run did not tear down what `up` started
      const port = Number(new URL(api.endpoints[0]).port);
      assert.equal(await portOpen(port), true);
      const down = await cli(['down', ...app]);
      assert.equal(down.code, 0, down.stderr);
      assert.equal(await portOpen(port), false);
      const ps2 = await cli(['ps', ...app, '--json']);
      assert.deepEqual(JSON.parse(ps2.stdout).services, []);
    } finally {
      await cli(['down', ...app]);
    }
  });

  // SIGHUP: the terminal closed (an ssh session dropped); it must tear down like Ctrl-C
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) test(`${sig} during a run exits 130 and leaves no SUT process, PostgreSQL or port behind`, async () => {
    const child = spawn(process.execPath, [BIN, 'run', 'fixtures/cli/with-app/slow.lua', '--app', 'fixtures/cli/with-app/topas.yaml', '--backend', 'local'], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    child.stdout.on('data', () => undefined);
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const deadline = Date.now() + 60_000;
    while (!/endpoint db /.test(stderr) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    assert.match(stderr, /endpoint db /, 'the scenario never started');
    const ports = [...stderr.matchAll(/endpoint \w+ \w+:\/\/(?:[^@\s]*@)?127\.0\.0\.1:(\d+)/g)].map((m) => Number(m[1]));
    assert.equal(ports.length, 2);
    const pids = descendants(child.pid!);
    assert.ok(pids.length >= 2, `expected SUT processes under topas, saw ${pids.length}`);
    // detached service processes are not children in the tree: collect by port owner too
    child.kill(sig);
    const code = await exited;
    assert.equal(code, 130, stderr);
    for (const pid of pids) assert.equal(alive(pid), false, `process ${pid} survived`);
    for (const port of ports) assert.equal(await portOpen(port), false, `port ${port} still open`);
    assert.match(stderr, new RegExp(`${sig}: stopping scenarios and tearing down`));
  });

  test('a run killed with -9 while PostgreSQL is being made has recorded its folder outside $TMPDIR (as root), so a sweep can remove it', async (t) => {
    if (process.getuid?.() !== 0) return t.skip('only as root does PostgreSQL get a folder outside $TMPDIR');
    const tmp = (await import('node:os')).tmpdir();
    const before = new Set(fs.readdirSync('/tmp').filter((f) => f.startsWith('topas-pg-2')));
    const child = spawn(process.execPath, [BIN, 'up', '--app', 'fixtures/cli/with-app/topas.yaml', '--backend', 'local'], { cwd: REPO_ROOT, stdio: 'ignore' });
    const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
    const registry = path.join(tmp, 'topas-local');
    let dir: string | undefined;
    let runId: string | undefined;
    const deadline = Date.now() + 60_000;
    // ours: a new topas-pg-<runId>-* folder whose run is in our own $TMPDIR's registry
    while (!dir && Date.now() < deadline) {
      for (const f of fs.readdirSync('/tmp')) {
        const m = /^topas-pg-(.+)-[A-Za-z0-9]{6}$/.exec(f);
        if (m && !before.has(f) && fs.existsSync(path.join(registry, `${m[1]}.json`))) {
          dir = path.join('/tmp', f);
          runId = m[1];
        }
      }
      if (!dir) await new Promise((r) => setTimeout(r, 5));
    }
    // initdb takes a second or more: 50 ms in, topas is still making PostgreSQL (the record it wrote
    // before initdb is on disk; the one after PostgreSQL started is not)
    await new Promise((r) => setTimeout(r, 50));
    child.kill('SIGKILL');
    await exited;
    assert.ok(dir && runId, 'no PostgreSQL folder appeared');
    const recordFile = path.join(registry, `${runId}.json`);
    const rec = JSON.parse(fs.readFileSync(recordFile, 'utf8')) as { extraDirs: string[]; workDir: string; proxyHost?: { pid: number } };
    try {
      assert.ok(rec.extraDirs.includes(dir), `the record does not name ${dir}: ${JSON.stringify(rec.extraDirs)}`);
    } finally {
      // what the killed run left (as a sweep would, for this run only): its proxy host, folders and record
      if (rec.proxyHost && alive(rec.proxyHost.pid)) process.kill(rec.proxyHost.pid, 'SIGKILL');
      // the killed run's initdb lives on for a moment and keeps writing there: end it (found by the
      // run's own folder in its command line), then remove what it wrote
      for (const pid of processesNaming(dir!)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* already gone */
        }
      }
      for (const d of [rec.workDir, dir]) fs.rmSync(d, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
      fs.rmSync(recordFile, { force: true });
    }
  });
});

/** Pids whose command line names `text` (a folder unique to one run). */
function processesNaming(text: string): number[] {
  const out: number[] = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if (fs.readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0').some((arg) => arg.includes(text))) out.push(Number(name));
    } catch {
      /* exited meanwhile */
    }
  }
  return out;
}
