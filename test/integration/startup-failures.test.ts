import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { REPO_ROOT } from '../helpers/cli';
import { isAlive, type ProcessRef } from '../../src/backends/local/processes';
import type { RunRecord } from '../../src/backends/local/run-registry';

/**
 * `topas up` / `topas run` as users run them (a child `node bin/run.js`), when
 * the SUT cannot be stood up: exit 3, the cause, the service's last log lines
 * with its replica prefix, a hint, no JS stack (unless --debug), and nothing
 * left running. Every child gets its own private TMPDIR (0700, as `mktemp -d`
 * makes it), so the local run registry it writes there names exactly the
 * processes of that run.
 */
const BIN = path.join(REPO_ROOT, 'bin', 'run.js');
const MOCK_APP = path.join(REPO_ROOT, 'fixtures', 'apps', 'mock-app', 'server.js');
const QUICKSTART = path.join(REPO_ROOT, 'fixtures', 'quickstart');
const STACK_LINE = /^\s+at .+:\d+:\d+\)?$/m;

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-startup-'));
after(() => fs.rmSync(scratch, { recursive: true, force: true }));

function appDir(name: string, yaml: string): string {
  const dir = fs.mkdtempSync(path.join(scratch, `${name}-`));
  fs.writeFileSync(path.join(dir, 'topas.yaml'), yaml);
  fs.writeFileSync(path.join(dir, 'smoke.lua'), 'print("never runs")\n');
  return dir;
}

/** A fresh private TMPDIR, 0700 like `mktemp -d` makes it. */
function privateTmp(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-ptmp-'));
  fs.chmodSync(dir, 0o700);
  return dir;
}

interface Child {
  code: number | null;
  stdout: string;
  stderr: string;
  /** every process a local run recorded in its registry while it ran (services, postgres) */
  recorded: ProcessRef[];
  runIds: Set<string>;
}

function readRegistry(tmp: string): RunRecord[] {
  const dir = path.join(tmp, 'topas-local');
  let names: string[] = [];
  try {
    names = fs.readdirSync(dir).filter((n) => n.endsWith('.json'));
  } catch {
    return [];
  }
  const out: RunRecord[] = [];
  for (const n of names) {
    try {
      out.push(JSON.parse(fs.readFileSync(path.join(dir, n), 'utf8')) as RunRecord);
    } catch {
      // being replaced
    }
  }
  return out;
}

/**
 * Runs the CLI as a child; while it runs, collects what its local runs record
 * in the registry, and sends it SIGINT once `interruptWhen` says so.
 */
async function runTopas(
  args: string[],
  opts: { tmp: string; cwd?: string; timeoutMs?: number; interruptWhen?: (c: Child) => boolean } = { tmp: privateTmp() },
): Promise<Child> {
  const env: NodeJS.ProcessEnv = { ...process.env, TMPDIR: opts.tmp, TESTCONTAINERS_RYUK_DISABLED: 'true' };
  // the child is the CLI, not a test file
  delete env.NODE_TEST_CONTEXT;
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd: opts.cwd ?? REPO_ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const res: Child = { code: null, stdout: '', stderr: '', recorded: [], runIds: new Set() };
  child.stdout.on('data', (d: Buffer) => (res.stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (res.stderr += d.toString()));
  const seen = new Map<number, ProcessRef>();
  let interrupted = false;
  const watch = setInterval(() => {
    for (const rec of readRegistry(opts.tmp)) {
      res.runIds.add(rec.runId);
      for (const p of [...rec.processes, ...(rec.postgres ? [rec.postgres] : [])]) seen.set(p.pid, p);
    }
    res.recorded = [...seen.values()];
    if (!interrupted && opts.interruptWhen?.(res)) {
      interrupted = true;
      child.kill('SIGINT');
    }
  }, 20);
  const killer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
  res.code = await new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  clearInterval(watch);
  clearTimeout(killer);
  return res;
}

function assertNoStack(r: Child): void {
  assert.doesNotMatch(r.stdout, STACK_LINE, `a stack on stdout:\n${r.stdout}`);
  assert.doesNotMatch(r.stderr, STACK_LINE, `a stack on stderr:\n${r.stderr}`);
}

/** Nothing the run recorded still runs, its registry entry is gone, and no process carries its run id. */
async function assertNothingLeft(r: Child, tmp: string): Promise<void> {
  const deadline = Date.now() + 5000;
  while (r.recorded.some((p) => isAlive(p)) && Date.now() < deadline) await new Promise((res) => setTimeout(res, 100));
  const alive = r.recorded.filter((p) => isAlive(p));
  assert.deepEqual(alive, [], `still running after the run ended: ${alive.map((p) => p.pid).join(', ')}`);
  assert.deepEqual(readRegistry(tmp), [], 'the run registry still lists the run');
  for (const runId of r.runIds) assert.deepEqual(processesWithRunId(runId), [], `processes with TOPAS_RUN_ID=${runId}`);
}

/** Service processes carry TOPAS_RUN_ID in their environment. */
function processesWithRunId(runId: string): number[] {
  const out: number[] = [];
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (fs.readFileSync(`/proc/${e}/environ`, 'utf8').split('\0').includes(`TOPAS_RUN_ID=${runId}`) && isAlive({ pid: Number(e) })) out.push(Number(e));
    } catch {
      // gone or not ours to read
    }
  }
  return out;
}

function combined(r: Child): string {
  return `exit ${r.code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;
}

const COMMANDS = [
  { name: 'up', args: (dir: string) => ['up', '--app', path.join(dir, 'topas.yaml')] },
  { name: 'run', args: (dir: string) => ['run', path.join(dir, 'smoke.lua'), '--app', path.join(dir, 'topas.yaml')] },
];

describe('stand-up failures on the local backend: exit 3, cause, log lines, hint, no stack, nothing left', () => {
  const cases = [
    {
      kind: 'a command that does not exist',
      yaml: `name: sf-nocmd\nservices:\n  - name: api\n    command: ["./no-such-binary-here"]\n    port: 8080\n`,
      expect: [/error \[SUT_START_FAILED\]|✗ run/, /cannot start `\.\/no-such-binary-here`/, /hint: .*check `command`.*services\[0\]/],
    },
    {
      kind: 'bad initSQL',
      yaml: `name: sf-badsql\ndatabases:\n  - name: db\n    port: 5432\n    credentials: { user: admin, password: secret, dbname: testdb }\n    initSQL: |\n      CREATE TABLE ok_table (id int);\n      CREATE TABLE users (id serial PRIMARY KEY;\n`,
      expect: [/database db: initSQL failed: syntax error at or near ";"/, /initSQL line 2: CREATE TABLE users \(id serial PRIMARY KEY;/, /hint: .*`initSQL`.*databases\[0\]/],
    },
    {
      kind: 'a service that exits at start',
      yaml: `name: sf-exits\nservices:\n  - name: api\n    command: ["node", "-e", "console.log('booting'); console.error('fatal: config missing'); process.exit(1)"]\n    port: 8080\n`,
      expect: [/service api replica 1: exited/, /\[api-1\] booting\n.*\[api-1\] fatal: config missing/, /hint: the service exited with code 1 before it was ready/, /services\[0\]/],
    },
    {
      kind: 'readiness never met',
      yaml: `name: sf-stuck\nservices:\n  - name: api\n    command: ["node", "-e", "console.log('waiting forever'); setInterval(() => {}, 1000)"]\n    port: 8080\n    ready: { http: /healthz, timeout: 2s }\n`,
      expect: [/service api replica 1: not ready after 2\.00s \(http GET \/healthz/, /\[api-1\] waiting forever/, /hint: .*GET \/healthz.*`ready`.*services\[0\]/],
    },
  ];
  for (const c of cases) {
    for (const cmd of COMMANDS) {
      test(`${c.kind} (topas ${cmd.name})`, async () => {
        const dir = appDir(c.yaml.split('\n')[0].slice(6), c.yaml);
        const tmp = privateTmp();
        try {
          const r = await runTopas([...cmd.args(dir), '--backend', 'local'], { tmp });
          assert.equal(r.code, 3, combined(r));
          for (const re of c.expect) assert.match(r.stdout + r.stderr, re, combined(r));
          assertNoStack(r);
          await assertNothingLeft(r, tmp);
          assert.equal(fs.existsSync(path.join(dir, '.topas', 'state.json')), false);
        } finally {
          fs.rmSync(tmp, { recursive: true, force: true });
        }
      });
    }
  }

  test('--debug shows the stack', async () => {
    const dir = appDir('sf-debug', cases[2].yaml);
    const tmp = privateTmp();
    try {
      const r = await runTopas(['up', '--app', path.join(dir, 'topas.yaml'), '--backend', 'local', '--debug'], { tmp });
      assert.equal(r.code, 3, combined(r));
      assert.match(r.stderr, /hint: the service exited with code 1/);
      assert.match(r.stderr, STACK_LINE, combined(r));
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });

  for (const cmd of COMMANDS) {
    test(`Ctrl-C while standing up (topas ${cmd.name}): exit 130, says so, no stack, nothing left`, async () => {
      const yaml =
        `name: sf-ctrlc\nservices:\n  - name: api\n    command: ["node", "-e", "console.log('slow boot'); setInterval(() => {}, 1000)"]\n` +
        `    port: 8080\n    replicas: 2\n    depends_on: [db]\n    ready: { log: "never printed", timeout: 60s }\n` +
        `databases:\n  - name: db\n    port: 5432\n    credentials: { user: admin, password: secret, dbname: testdb }\n`;
      const dir = appDir('sf-ctrlc', yaml);
      const tmp = privateTmp();
      try {
        // interrupt once postgres and both replicas run
        const r = await runTopas([...cmd.args(dir), '--backend', 'local'], { tmp, interruptWhen: (c) => c.recorded.length >= 3 });
        assert.equal(r.code, 130, combined(r));
        assert.ok(r.recorded.length >= 3, `interrupted too early: ${combined(r)}`);
        assert.match(r.stdout + r.stderr, /interrupted while standing up; everything started was torn down/, combined(r));
        assertNoStack(r);
        await assertNothingLeft(r, tmp);
      } finally {
        fs.rmSync(tmp, { recursive: true, force: true });
      }
    });
  }
});

describe('run as root with a private (0700) TMPDIR, the local backend stands PostgreSQL up', () => {
  const root = typeof process.getuid === 'function' && process.getuid() === 0;
  test('up, run, down of the quickstart: exit 0 each, postgres gone, no password file left', { skip: root ? false : 'needs root' }, async () => {
    const dir = fs.mkdtempSync(path.join(scratch, 'quickstart-'));
    fs.writeFileSync(
      path.join(dir, 'topas.yaml'),
      fs.readFileSync(path.join(QUICKSTART, 'topas.yaml'), 'utf8').replace('../apps/mock-app/server.js', MOCK_APP),
    );
    fs.cpSync(path.join(QUICKSTART, 'tests'), path.join(dir, 'tests'), { recursive: true });
    const tmp = privateTmp();
    assert.equal(fs.statSync(tmp).mode & 0o777, 0o700);
    const app = ['--app', path.join(dir, 'topas.yaml')];
    try {
      const up = await runTopas(['up', ...app, '--backend', 'local', '--json'], { tmp, cwd: dir });
      assert.equal(up.code, 0, combined(up));
      const state = JSON.parse(fs.readFileSync(path.join(dir, '.topas', 'state.json'), 'utf8'));
      const pg = state.data.postgres as { pid: number; startTicks?: number; dataDir: string };
      assert.equal(isAlive(pg), true);
      // the data dir is private to postgres; the password file initdb read is gone
      const pgBase = path.dirname(pg.dataDir);
      assert.equal(fs.statSync(pg.dataDir).mode & 0o077, 0);
      assert.deepEqual(fs.readdirSync(pgBase).filter((f) => /pw/.test(f)), []);

      const run = await runTopas(['run', path.join(dir, 'tests', 'quickstart.lua'), ...app], { tmp, cwd: dir });
      assert.equal(run.code, 0, combined(run));
      assert.match(run.stdout, /1 passed, 0 failed/);

      const down = await runTopas(['down', ...app], { tmp, cwd: dir });
      assert.equal(down.code, 0, combined(down));
      assert.equal(isAlive(pg), false, 'postgres still runs after down');
      assert.equal(fs.existsSync(pgBase), false, `${pgBase} is left`);
      for (const p of up.recorded) assert.equal(isAlive(p), false, `pid ${p.pid} still runs`);
      assert.deepEqual(readRegistry(tmp), []);
    } finally {
      await runTopas(['down', ...app], { tmp, cwd: dir }).catch(() => undefined);
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });
});

function docker(...args: string[]): string {
  return execFileSync('docker', args, { encoding: 'utf8' }).trim();
}

function dockerAvailable(): boolean {
  try {
    docker('image', 'inspect', 'local/mock-app:1.0.0');
    return true;
  } catch {
    return false;
  }
}

/** Containers and networks labelled with this app (the app name is unique to the test) or one of these runs. */
function dockerLeftovers(app: string, runIds: Iterable<string> = []): string[] {
  const out: string[] = [];
  for (const filter of [`label=topas.app=${app}`, ...[...runIds].map((id) => `label=topas.run=${id}`)]) {
    out.push(...docker('ps', '-aq', '--filter', filter).split('\n').filter(Boolean));
    out.push(...docker('network', 'ls', '-q', '--filter', filter).split('\n').filter(Boolean));
  }
  return [...new Set(out)];
}

function dockerRunIds(app: string): string[] {
  const out = docker('ps', '-a', '--filter', `label=topas.app=${app}`, '--format', '{{.Label "topas.run"}}');
  return [...new Set(out.split('\n').filter(Boolean))];
}

function dirsIn(dir: string): string[] {
  return fs
    .readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isDirectory())
    .map((e) => e.name)
    .sort();
}

describe('stand-up failures on the docker backend', { skip: dockerAvailable() ? false : 'no Docker or no local/mock-app image' }, () => {
  const cases = [
    {
      kind: 'a service that exits at start',
      app: `sf-dexits-${process.pid}`,
      service: `    env:\n      HOST: 203.0.113.1\n    ready: { http: /healthz, timeout: 30s }\n`,
      expect: [/service api replica 1: exited/, /\[api-1\] http listen failed on 8080/, /hint: the service exited with code 1 before it was ready/, /services\[0\]/],
    },
    {
      kind: 'readiness never met',
      app: `sf-dstuck-${process.pid}`,
      service: `    ready: { http: /no-such-path, timeout: 3s }\n`,
      expect: [/service api replica 1: not ready after 3\.00s \(http GET \/no-such-path: last result HTTP 404\)/, /\[api-1\] listening on 8080/, /hint: .*GET \/no-such-path.*`ready`.*services\[0\]/],
    },
  ];
  for (const c of cases) {
    for (const cmd of COMMANDS) {
      test(`${c.kind} (topas ${cmd.name})`, async () => {
        const dir = appDir(c.app, `name: ${c.app}\nservices:\n  - name: api\n    image: local/mock-app\n    version: "1.0.0"\n    port: 8080\n${c.service}`);
        const tmp = privateTmp();
        try {
          const r = await runTopas([...cmd.args(dir), '--backend', 'docker'], { tmp });
          assert.equal(r.code, 3, combined(r));
          for (const re of c.expect) assert.match(r.stdout + r.stderr, re, combined(r));
          assertNoStack(r);
          assert.deepEqual(dockerLeftovers(c.app), []);
        } finally {
          fs.rmSync(tmp, { recursive: true, force: true });
        }
      });
    }
  }

  for (const cmd of COMMANDS) test(`Ctrl-C while standing up (topas ${cmd.name}): exit 130, says so, no stack, no container or network of the run left`, async () => {
    const app = `sf-dctrlc-${cmd.name}-${process.pid}`;
    const dir = appDir(app, `name: ${app}\nservices:\n  - name: api\n    image: local/mock-app\n    version: "1.0.0"\n    port: 8080\n    replicas: 2\n    ready: { http: /no-such-path, timeout: 60s }\n`);
    const tmp = privateTmp();
    const runIds = new Set<string>();
    try {
      let polls = 0;
      const r = await runTopas([...cmd.args(dir), '--backend', 'docker'], {
        tmp,
        // once both replicas' containers exist (docker is asked every 10th poll)
        interruptWhen: () => {
          if (++polls % 10 !== 0) return false;
          for (const id of dockerRunIds(app)) runIds.add(id);
          return docker('ps', '-q', '--filter', `label=topas.app=${app}`).split('\n').filter(Boolean).length >= 2;
        },
      });
      assert.equal(r.code, 130, combined(r));
      assert.ok(runIds.size > 0, 'no container was seen before the interrupt');
      assert.match(r.stdout + r.stderr, /interrupted while standing up; everything started was torn down/, combined(r));
      assertNoStack(r);
      assert.deepEqual(dockerLeftovers(app, runIds), []);
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });

  test('a docker run leaves no new folder in TMPDIR', async () => {
    const app = `sf-dtmp-${process.pid}`;
    const dir = appDir(app, `name: ${app}\nservices:\n  - name: api\n    image: local/mock-app\n    version: "1.0.0"\n    port: 8080\n    ready: { http: /healthz, timeout: 30s }\n`);
    fs.writeFileSync(path.join(dir, 'smoke.lua'), 'local net = require("net")\nexpect(net.get("http://api/healthz").code):to_be(200)\n');
    const tmp = privateTmp();
    try {
      const before = dirsIn(tmp);
      const r = await runTopas(['run', path.join(dir, 'smoke.lua'), '--app', path.join(dir, 'topas.yaml'), '--backend', 'docker'], { tmp });
      assert.equal(r.code, 0, combined(r));
      assert.deepEqual(dirsIn(tmp), before);
      const up = await runTopas(['up', '--app', path.join(dir, 'topas.yaml'), '--backend', 'docker'], { tmp });
      assert.equal(up.code, 0, combined(up));
      const down = await runTopas(['down', '--app', path.join(dir, 'topas.yaml')], { tmp });
      assert.equal(down.code, 0, combined(down));
      assert.deepEqual(dockerLeftovers(app), []);
      // the proxy host of a kept SUT has its folder under topas-docker/ while the SUT lives; nothing else stays
      assert.deepEqual(dirsIn(tmp).filter((d) => d !== 'topas-docker'), before);
      if (fs.existsSync(path.join(tmp, 'topas-docker', 'proxy-hosts'))) assert.deepEqual(dirsIn(path.join(tmp, 'topas-docker', 'proxy-hosts')), []);
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });
});
