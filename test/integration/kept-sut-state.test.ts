import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { cli, REPO_ROOT } from '../helpers/cli';
import { ProxyHostClient, type ProxyHostInfo } from '../../src/shape/proxy-host';

/**
 * On both backends: a SUT kept by `topas up` stays true while attached runs
 * change it. After every run that scales, upgrades or restarts it, `topas ps`
 * shows what really runs (checked against the processes / containers of the
 * run, found by run id), the next run keeps the running replicas, the
 * dependents' proxy host routes to the current replicas, and `topas down`
 * leaves nothing behind, also after an attached run was killed -9 mid-scale.
 */

interface PsService {
  name: string;
  replicas: number;
  ready: boolean;
  version?: string;
  endpoints: string[];
}
interface PsResult {
  backend?: string;
  runId?: string;
  services: PsService[];
}

const WAIT_MS = 20_000;

function appYaml(name: string): string {
  const server = path.join(REPO_ROOT, 'fixtures', 'apps', 'mock-app', 'server.js');
  return [
    `name: ${name}`,
    'services:',
    '  - name: api',
    '    image: local/mock-app',
    '    version: "1.0.0"',
    `    command: ["node", ${JSON.stringify(server)}]`,
    '    port: 8080',
    '    replicas: 2',
    '    ready: { http: /healthz, timeout: 30s }',
    '',
  ].join('\n');
}

const SCENARIOS: Record<string, string> = {
  'scale3.lua': 'local sut = require("sut")\nstep("scale to 3", function()\n  sut.scale("api", 3)\n  sut.wait_ready("api")\nend)\n',
  'upgrade.lua':
    'local sut = require("sut")\nstep("upgrade then restart", function()\n  sut.apply_service("api", { version = "1.1.0" })\n  sut.wait_ready("api")\n  sut.restart("api")\n  sut.wait_ready("api")\nend)\n',
  'look.lua': 'local net = require("net")\nstep("look", function()\n  check("api answers", net.get("http://api/version").code == 200)\nend)\n',
  // killed -9 by the test while it scales
  'scale5.lua': 'local sut = require("sut")\nstep("scale to 5", function()\n  sut.scale("api", 5)\n  sut.wait_ready("api")\nend)\n',
};

/** Live (not zombie) processes whose environment names this run, with their service. */
function runProcesses(runId: string): Map<number, string> {
  const out = new Map<number, string>();
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let env: string;
    let stat: string;
    try {
      env = fs.readFileSync(`/proc/${name}/environ`, 'utf8');
      stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
    } catch {
      continue;
    }
    const vars = env.split('\0');
    if (!vars.includes(`TOPAS_RUN_ID=${runId}`)) continue;
    const state = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
    if (state === 'Z' || state === 'X') continue;
    out.set(Number(name), (vars.find((v) => v.startsWith('TOPAS_SERVICE=')) ?? '').slice('TOPAS_SERVICE='.length));
  }
  return out;
}

function alive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

interface ContainerInfo {
  id: string;
  state: string;
  image: string;
  service: string;
}

function runContainers(runId: string): ContainerInfo[] {
  const text = execFileSync('docker', ['ps', '-a', '--no-trunc', '--filter', `label=topas.run=${runId}`, '--format', '{{.ID}} {{.State}} {{.Image}} {{.Label "topas.service"}}'], {
    encoding: 'utf8',
  });
  return text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => {
      const [id, state, image, service] = l.split(' ');
      return { id, state, image, service };
    });
}

function get(url: string): Promise<{ code: number; body: string; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, timeout: 3000, headers: { connection: 'close' } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ code: res.statusCode ?? 0, body, headers: res.headers }));
    });
    req.on('timeout', () => req.destroy(new Error(`no answer from ${url} in 3s`)));
    req.on('error', reject);
  });
}

async function eventually(what: string, check: () => boolean | Promise<boolean>, withinMs = WAIT_MS): Promise<void> {
  const deadline = Date.now() + withinMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail(`${what}: not within ${withinMs}ms`);
}

for (const backend of ['local', 'docker'] as const) {
  describe(`a SUT kept by topas up stays true (${backend})`, () => {
    const appName = `keptstate-${backend}`;
    let dir = '';
    let app = '';
    let runId = '';
    /** every replica pid (local) / container id (docker) ever seen, for the final check */
    const everPids = new Set<number>();
    const everContainers = new Set<string>();

    const ps = async (): Promise<PsResult> => {
      const r = await cli(['ps', '--app', app, '--json']);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      return JSON.parse(r.stdout) as PsResult;
    };
    const api = (p: PsResult): PsService => {
      const s = p.services.find((x) => x.name === 'api');
      assert.ok(s, `no api in ps: ${JSON.stringify(p)}`);
      return s;
    };
    const run = async (...files: string[]): Promise<void> => {
      const r = await cli(['run', ...files.map((f) => path.join(dir, f)), '--app', app]);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.match(r.stderr, /reusing the SUT started by `topas up`/);
    };

    /** The replicas that really run: pids (local) or container ids (docker) of api. */
    const actual = (): string[] => {
      if (backend === 'local') {
        const pids = [...runProcesses(runId)].filter(([, svc]) => svc === 'api').map(([pid]) => pid);
        for (const p of pids) everPids.add(p);
        return pids.map(String).sort();
      }
      const cs = runContainers(runId).filter((c) => c.service === 'api');
      for (const c of cs) everContainers.add(c.id);
      return cs.filter((c) => c.state === 'running').map((c) => c.id).sort();
    };

    /** ps says `replicas` ready replicas of `version`, and that is what runs and answers on its endpoints. */
    const assertTrue = async (replicas: number, version: string): Promise<string[]> => {
      const s = api(await ps());
      const real = actual();
      assert.equal(s.replicas, replicas, `ps: ${JSON.stringify(s)}`);
      assert.equal(s.ready, true, `ps: ${JSON.stringify(s)}`);
      assert.equal(s.version, version, `ps: ${JSON.stringify(s)}`);
      assert.equal(real.length, replicas, `running api replicas of run ${runId}: ${real.join(', ')}; ps: ${JSON.stringify(s)}`);
      assert.equal(s.endpoints.length, replicas, `ps endpoints: ${s.endpoints.join(', ')}`);
      const seen = new Set<string>();
      for (const url of s.endpoints) {
        const res = await get(`${url}/version`);
        assert.equal(res.code, 200, `${url}/version`);
        assert.equal((JSON.parse(res.body) as { version: string }).version, version, `${url}/version`);
        seen.add(String(res.headers['x-pid']));
      }
      if (backend === 'local') assert.deepEqual([...seen].sort(), real, 'the endpoints ps shows are the processes that run');
      if (backend === 'docker') {
        for (const c of runContainers(runId).filter((x) => x.service === 'api' && x.state === 'running')) {
          assert.equal(c.image, `local/mock-app:${version}`, `container ${c.id}`);
        }
      }
      return real;
    };

    /** The dependents' proxy in the proxy host routes to the current replicas only. */
    const assertProxyHostRoutes = async (replicas: number, version: string): Promise<void> => {
      const state = JSON.parse(fs.readFileSync(path.join(dir, '.topas', 'state.json'), 'utf8')) as { data: { proxyHost?: ProxyHostInfo; gateway?: string } };
      if (!state.data.proxyHost) return;
      const host = new ProxyHostClient(state.data.proxyHost);
      // asking for the existing proxy by its key hands back its address
      const addr = await host.addProxy('api:main', 'api', 'http', backend === 'docker' ? state.data.gateway! : '127.0.0.1');
      const real = new Set(actual());
      const replicasSeen = new Set<string>();
      for (let i = 0; i < replicas * 4; i++) {
        const res = await get(`http://${addr.host}:${addr.port}/version`);
        assert.equal(res.code, 200, `request ${i} through the proxy host: ${res.body}`);
        assert.equal((JSON.parse(res.body) as { version: string }).version, version, 'through the proxy host');
        if (backend === 'local') assert.ok(real.has(String(res.headers['x-pid'])), `the proxy host routed to pid ${String(res.headers['x-pid'])}, not a replica that runs`);
        replicasSeen.add(String(res.headers['x-topas-replica']));
      }
      // containers do not tell their replica apart (no TOPAS_REPLICA on docker); there every answer being right is the check
      if (backend === 'local') assert.equal(replicasSeen.size, replicas, `replicas reached through the proxy host: ${[...replicasSeen].join(', ')}`);
    };

    before(() => {
      if (backend === 'docker') {
        execFileSync('bash', [path.join(REPO_ROOT, 'scripts', 'ensure-docker.sh')], { stdio: 'inherit' });
        execFileSync('bash', [path.join(REPO_ROOT, 'scripts', 'build-fixture-images.sh')], { stdio: 'inherit' });
      }
      dir = fs.mkdtempSync(path.join(os.tmpdir(), `kept-${backend}-`));
      app = path.join(dir, 'topas.yaml');
      fs.writeFileSync(app, appYaml(appName));
      for (const [f, text] of Object.entries(SCENARIOS)) fs.writeFileSync(path.join(dir, f), text);
    });

    after(async () => {
      let hostPid: number | undefined;
      try {
        hostPid = (JSON.parse(fs.readFileSync(path.join(dir, '.topas', 'state.json'), 'utf8')) as { data: { proxyHost?: ProxyHostInfo } }).data.proxyHost?.pid;
      } catch {
        /* not up */
      }
      await cli(['down', '--app', app]);
      if (hostPid && alive(hostPid)) process.kill(hostPid, 'SIGKILL');
      // whatever a failed test left: only what this test saw by pid / run id
      for (const pid of [...everPids, ...(runId ? runProcesses(runId).keys() : [])]) {
        try {
          process.kill(-pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
      if (backend === 'docker' && runId) {
        const ids = runContainers(runId).map((c) => c.id);
        if (ids.length) execFileSync('docker', ['rm', '-f', ...ids], { stdio: 'ignore' });
      }
      fs.rmSync(dir, { recursive: true, force: true });
    });

    test('up: ps shows 2 ready replicas of 1.0.0, and they run', async () => {
      const up = await cli(['up', '--app', app, '--backend', backend]);
      assert.equal(up.code, 0, up.stdout + up.stderr);
      const p = await ps();
      assert.equal(p.backend, backend);
      runId = p.runId!;
      assert.ok(runId);
      await assertTrue(2, '1.0.0');
    });

    test('a run that scales to 3: ps, the processes and the proxy host agree', async () => {
      await run('scale3.lua');
      await assertTrue(3, '1.0.0');
      await assertProxyHostRoutes(3, '1.0.0');
    });

    test('a run that changes nothing keeps the running replicas', async () => {
      const before = actual();
      await run('look.lua');
      assert.deepEqual(actual(), before, 'replicas were replaced by a run that changed nothing');
      await assertTrue(3, '1.0.0');
    });

    test('a run that upgrades to 1.1.0 and restarts: ps shows the new version on 3 new replicas', async () => {
      const old = actual();
      await run('upgrade.lua');
      const now = await assertTrue(3, '1.1.0');
      assert.equal(
        now.filter((x) => old.includes(x)).length,
        0,
        `replicas of before the upgrade still run: ${now.filter((x) => old.includes(x)).join(', ')}`,
      );
      await assertProxyHostRoutes(3, '1.1.0');
      // and the next run finds them
      await run('look.lua');
      assert.deepEqual(actual(), now, 'replicas were replaced by a run that changed nothing');
    });

    test('an attached run killed -9 mid-scale: ps shows what runs, a later run keeps it, down removes it all', async () => {
      const before = actual().length;
      const env = { ...process.env };
      delete env.NODE_TEST_CONTEXT;
      const child = spawn(process.execPath, [path.join(REPO_ROOT, 'bin', 'run.js'), 'run', path.join(dir, 'scale5.lua'), '--app', app], {
        cwd: dir,
        env,
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let stderr = '';
      child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      try {
        // kill it as soon as a new replica exists: it is spawned, maybe not ready
        await eventually(`a replica started by the scaling run (stderr: ${stderr})`, () => actual().length > before, 60_000);
      } finally {
        child.kill('SIGKILL');
        await exited;
      }
      // ps tells the truth about what runs, whatever the killed run managed to record
      let last = '';
      await eventually(`ps agrees with the replicas that run (last: ${last})`, async () => {
        const s = api(await ps());
        last = `ps ${JSON.stringify(s)}, running ${actual().join(', ')}`;
        return s.replicas === actual().length;
      }).catch((err: Error) => assert.fail(`${err.message}: ${last}; killed run's stderr: ${stderr}`));
      const afterCrash = actual();
      const next = await cli(['run', path.join(dir, 'look.lua'), '--app', app]);
      assert.equal(next.code, 0, next.stdout + next.stderr);
      const kept = actual();
      // it finishes the scale the killed run declared, and restarts none of what runs
      assert.deepEqual(afterCrash.filter((x) => !kept.includes(x)), [], `replicas the next run replaced (running now: ${kept.join(', ')})`);
      const down = await cli(['down', '--app', app]);
      assert.equal(down.code, 0, down.stdout + down.stderr);
      assert.ok(kept.length >= before, `replicas that run: ${kept.join(', ')}`);
      await eventually('no replica of the run is left', () => actual().length === 0, 10_000);
      if (backend === 'local') {
        await eventually(`every replica pid ever seen is gone (${[...everPids].join(', ')})`, () => [...everPids].every((p) => !alive(p)), 10_000);
        assert.deepEqual([...runProcesses(runId).keys()], [], 'processes of the run left after down');
      } else {
        assert.deepEqual(runContainers(runId), [], 'containers of the run left after down');
      }
      assert.ok(!fs.existsSync(path.join(dir, '.topas', 'state.json')), 'state.json left after down');
    });

    test('every replica gone behind its back: ps shows none, down still ends the proxy host', async () => {
      const up = await cli(['up', '--app', app, '--backend', backend]);
      assert.equal(up.code, 0, up.stdout + up.stderr);
      runId = (await ps()).runId!;
      const state = JSON.parse(fs.readFileSync(path.join(dir, '.topas', 'state.json'), 'utf8')) as { data: { proxyHost?: ProxyHostInfo } };
      const hostPid = state.data.proxyHost?.pid;
      assert.ok(hostPid && alive(hostPid), 'a proxy host runs for the kept SUT');
      if (backend === 'local') {
        for (const pid of actual()) process.kill(-Number(pid), 'SIGKILL');
      } else {
        execFileSync('docker', ['rm', '-f', ...runContainers(runId).map((c) => c.id)], { stdio: 'ignore' });
      }
      await eventually('the replicas are gone', () => actual().length === 0, 10_000);
      const s = api(await ps());
      assert.equal(s.replicas, 0, JSON.stringify(s));
      assert.equal(s.ready, false, JSON.stringify(s));
      const down = await cli(['down', '--app', app]);
      assert.equal(down.code, 0, down.stdout + down.stderr);
      await eventually(`proxy host ${hostPid} ends with its SUT`, () => !alive(hostPid), 10_000);
      assert.ok(!fs.existsSync(path.join(dir, '.topas', 'state.json')), 'state.json left after down');
    });
  });
}
