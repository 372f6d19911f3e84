import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { REPO_ROOT } from '../helpers/cli';
import { startHttpServer, type TestHttpServer } from '../helpers/http-server';

/**
 * `topas down --all` on a machine where other topas processes work: it removes
 * what a run whose owner process is gone left behind, never a live run of
 * another process, never a SUT another app kept with `topas up`. Every topas
 * here is a separate process sharing one private TMPDIR (so they see each
 * other's run registry, as on a real machine); every app has the same name, so
 * only the spec's path tells them apart.
 */
const BIN = path.join(REPO_ROOT, 'bin', 'run.js');
const MOCK_APP = path.join(REPO_ROOT, 'fixtures', 'apps', 'mock-app', 'server.js');
const STEP_TIMEOUT_MS = 180_000;

function appYaml(): string {
  return [
    'name: ownapp',
    'services:',
    '  - name: api',
    '    image: local/mock-app',
    '    version: "1.0.0"',
    `    command: ["node", ${JSON.stringify(MOCK_APP)}]`,
    '    port: 8080',
    '    env:',
    '      DATABASE_URL: ${db.url}',
    '    ready: { http: /healthz, timeout: 90s }',
    'databases:',
    '  - name: db',
    '    image: local/postgres',
    '    version: "15"',
    '    credentials: { user: app, password: own-pw, dbname: appdb }',
    '',
  ].join('\n');
}

/** Says it started, then checks its api every 200 ms until the test releases it; then its database. */
function waitingScenario(control: string, tag: string): string {
  return `local net = require("net")
local db = require("db")
net.get("${control}/started/${tag}")
local released = false
for i = 1, 900 do
  local h = net.get("http://api/healthz")
  if h.code ~= 200 then error("api answered " .. tostring(h.code) .. " while waiting") end
  if net.get("${control}/go").code == 200 then
    released = true
    break
  end
  sleep("200ms")
end
if not released then error("never released") end
local c = db.connect("db")
expect(#c:query("select 1 as one")):to_be(1)
`;
}

interface Proc {
  child: ChildProcess;
  /** stdout and stderr as they came */
  out: () => string;
  stdout: () => string;
  exited: Promise<number | null>;
}

function startTopas(args: string[], cwd: string, env: NodeJS.ProcessEnv): Proc {
  const child = spawn(process.execPath, [BIN, ...args], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let stdout = '';
  child.stdout!.on('data', (d) => ((out += d), (stdout += d)));
  child.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, out: () => out, stdout: () => stdout, exited };
}

async function topas(args: string[], cwd: string, env: NodeJS.ProcessEnv): Promise<{ code: number | null; out: string; stdout: string }> {
  const p = startTopas(args, cwd, env);
  const timer = setTimeout(() => p.child.kill('SIGKILL'), STEP_TIMEOUT_MS);
  const code = await p.exited;
  clearTimeout(timer);
  return { code, out: p.out(), stdout: p.stdout() };
}

async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs: number, diag: () => string = () => ''): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) assert.fail(`${what}: not within ${timeoutMs} ms\n${diag()}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

function startTicks(pid: number): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[0] === 'Z' ? undefined : fields[19];
  } catch {
    return undefined;
  }
}

/** A process of ours: pid plus start time, so a recycled pid does not count as it. */
interface Ref {
  pid: number;
  ticks: string;
}

function ref(pid: number): Ref | undefined {
  const ticks = startTicks(pid);
  return ticks === undefined ? undefined : { pid, ticks };
}

function alive(r: Ref): boolean {
  return startTicks(r.pid) === r.ticks;
}

/** Every process descending from `root` (our own child), read from /proc. */
function descendants(root: number): Ref[] {
  const parents = new Map<number, number[]>();
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      parents.set(ppid, [...(parents.get(ppid) ?? []), Number(entry)]);
    } catch {
      /* ended while we looked */
    }
  }
  const out: Ref[] = [];
  const walk = (pid: number): void => {
    for (const c of parents.get(pid) ?? []) {
      const r = ref(c);
      if (r) out.push(r);
      walk(c);
    }
  };
  walk(root);
  return out;
}

/** The processes a kept local SUT recorded in state.json: replicas, PostgreSQL, proxy host. */
function keptLocalProcesses(dir: string): Ref[] {
  const state = JSON.parse(fs.readFileSync(path.join(dir, '.topas', 'state.json'), 'utf8')) as {
    data: { services: Record<string, { replicas: Array<{ pid: number }> }>; postgres?: { pid: number }; proxyHost?: { pid: number } };
  };
  const pids = [
    ...Object.values(state.data.services).flatMap((s) => s.replicas.map((r) => r.pid)),
    ...(state.data.postgres ? [state.data.postgres.pid] : []),
    ...(state.data.proxyHost ? [state.data.proxyHost.pid] : []),
  ];
  return pids.map((p) => ref(p)).filter((r): r is Ref => r !== undefined);
}

function runIdOf(dir: string): string {
  const runs = fs.readdirSync(path.join(dir, '.topas', 'runs'));
  assert.equal(runs.length, 1, `one run in ${dir}`);
  return runs[0];
}

function docker(...args: string[]): string {
  return execFileSync('docker', args, { encoding: 'utf8' }).trim();
}

/** Containers (all states) and networks of one run, by its run label. */
function runObjects(runId: string): { containers: string[]; running: string[]; networks: string[] } {
  const lines = (s: string) => s.split('\n').filter(Boolean);
  return {
    containers: lines(docker('ps', '-aq', '--filter', `label=topas.run=${runId}`)),
    running: lines(docker('ps', '-q', '--filter', `label=topas.run=${runId}`)),
    networks: lines(docker('network', 'ls', '-q', '--filter', `label=topas.run=${runId}`)),
  };
}

for (const backend of ['local', 'docker'] as const) {
  describe(`topas down --all touches only runs whose owner is gone (${backend})`, { timeout: 900_000 }, () => {
    let tmp: string;
    let env: NodeJS.ProcessEnv;
    let control: TestHttpServer;
    let released = false;
    const started = new Set<string>();
    const folders: Record<'a' | 'b' | 'kept' | 'killed' | 'elsewhere', string> = { a: '', b: '', kept: '', killed: '', elsewhere: '' };
    const live: Proc[] = [];

    before(async () => {
      if (backend === 'docker') {
        execFileSync('bash', [path.join(REPO_ROOT, 'scripts', 'ensure-docker.sh')], { stdio: 'inherit' });
        execFileSync('bash', [path.join(REPO_ROOT, 'scripts', 'build-fixture-images.sh')], { stdio: 'inherit' });
      }
      tmp = fs.mkdtempSync(path.join(os.tmpdir(), `topas-own-${backend}-`));
      fs.chmodSync(tmp, 0o755);
      env = { ...process.env, TMPDIR: tmp, TESTCONTAINERS_RYUK_DISABLED: 'true' };
      control = await startHttpServer((req, res) => {
        const m = /^\/started\/(\w+)/.exec(req.url);
        if (m) started.add(m[1]);
        res.writeHead(req.url === '/go' && !released ? 204 : 200);
        res.end();
      });
      for (const name of Object.keys(folders) as Array<keyof typeof folders>) {
        const dir = path.join(tmp, `folder-${name}`);
        fs.mkdirSync(dir);
        fs.writeFileSync(path.join(dir, 'topas.yaml'), appYaml());
        fs.writeFileSync(path.join(dir, 'wait.lua'), waitingScenario(control.url, name));
        folders[name] = dir;
      }
    });

    after(async () => {
      released = true;
      for (const p of live) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGINT');
      await Promise.race([Promise.all(live.map((p) => p.exited)), new Promise((r) => setTimeout(r, 60_000))]);
      // whatever is still there is ours: remove it from each of our folders
      for (const dir of Object.values(folders)) if (dir) await topas(['down'], dir, env);
      await control?.close();
      fs.rmSync(tmp, { recursive: true, force: true });
    });

    test('live runs and another app’s kept SUT survive; the killed run’s leftovers go', async () => {
      const run = (dir: string, extra: string[] = []) => startTopas(['run', 'wait.lua', '--backend', backend, '--timeout', '10m', ...extra], dir, env);
      const a = run(folders.a);
      const b = run(folders.b);
      live.push(a, b);
      const up = await topas(['up', '--backend', backend], folders.kept, env);
      assert.equal(up.code, 0, up.out);
      await waitFor('both live runs started their scenario', () => started.has('a') && started.has('b'), STEP_TIMEOUT_MS, () => a.out() + b.out());

      // a run killed with -9 (--keep: it has a proxy host too); its owner is gone, its SUT is left
      const killed = run(folders.killed, ['--keep']);
      live.push(killed);
      await waitFor('the run to be killed started its scenario', () => started.has('killed'), STEP_TIMEOUT_MS, killed.out);
      const killedRun = runIdOf(folders.killed);
      const killedProcs = descendants(killed.child.pid!);
      const liveProcs = [...descendants(a.child.pid!), ...descendants(b.child.pid!)];
      const keptProcs = backend === 'local' ? keptLocalProcesses(folders.kept) : [];
      const keptRun = (JSON.parse(fs.readFileSync(path.join(folders.kept, '.topas', 'state.json'), 'utf8')) as { runId: string }).runId;
      const liveRuns = [runIdOf(folders.a), runIdOf(folders.b), keptRun];
      if (backend === 'local') {
        assert.ok(killedProcs.length >= 3, `the killed run had its api, PostgreSQL and proxy host: ${JSON.stringify(killedProcs)}`);
        assert.ok(liveProcs.length >= 4, `the live runs have their api and PostgreSQL: ${JSON.stringify(liveProcs)}`);
        assert.ok(keptProcs.length >= 3, 'the kept SUT has its api, PostgreSQL and proxy host');
      } else {
        assert.ok(killedProcs.length >= 1, 'the killed run had a proxy host');
        assert.ok(runObjects(killedRun).containers.length >= 2);
      }
      killed.child.kill('SIGKILL');
      await killed.exited;
      for (const p of killedProcs) assert.ok(alive(p), `kill -9 cannot clean up: ${p.pid} should still run`);

      const down = await topas(['down', '--all'], folders.elsewhere, env);
      assert.equal(down.code, 0, down.out);
      assert.match(down.out, new RegExp(killedRun));
      for (const id of liveRuns) assert.doesNotMatch(down.out, new RegExp(id), `down --all reported a live run:\n${down.out}`);

      // the killed run's processes (api, PostgreSQL, proxy host) / containers are gone
      await waitFor('the killed run’s processes to end', () => killedProcs.every((p) => !alive(p)), 10_000, () => JSON.stringify(killedProcs.filter(alive)));
      if (backend === 'docker') assert.deepEqual(runObjects(killedRun), { containers: [], running: [], networks: [] });
      else assert.equal(fs.existsSync(path.join(tmp, 'topas-local', `${killedRun}.json`)), false, 'the killed run’s registry record is gone');

      // nothing of the live runs or the kept SUT was touched
      for (const p of [...liveProcs, ...keptProcs]) assert.ok(alive(p), `process ${p.pid} of a live run or the kept SUT was stopped`);
      if (backend === 'docker') {
        for (const id of liveRuns) {
          const o = runObjects(id);
          assert.ok(o.running.length >= 2 && o.networks.length === 1, `run ${id} lost containers: ${JSON.stringify(o)}`);
        }
      }
      released = true;
      const [codeA, codeB] = await Promise.all([a.exited, b.exited]);
      assert.equal(codeA, 0, a.out());
      assert.equal(codeB, 0, b.out());

      const ps = await topas(['ps', '--json'], folders.kept, env);
      assert.equal(ps.code, 0, ps.out);
      const services = (JSON.parse(ps.stdout) as { services: Array<{ name: string; ready: boolean }> }).services;
      assert.deepEqual(
        services.map((s) => [s.name, s.ready]).sort(),
        [
          ['api', true],
          ['db', true],
        ],
      );
      const downKept = await topas(['down'], folders.kept, env);
      assert.equal(downKept.code, 0, downKept.out);
      await waitFor('the kept SUT’s processes to end', () => keptProcs.every((p) => !alive(p)), 10_000);
      if (backend === 'docker') assert.deepEqual(runObjects(keptRun), { containers: [], running: [], networks: [] });
    });
  });
}
