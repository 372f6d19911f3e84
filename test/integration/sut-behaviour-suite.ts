import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { parseAppSpec } from '../../src/spec/load-app-spec';
import type { Backend, Sut } from '../../src/backends/backend';
import { TopasError } from '../../src/errors';

/**
 * One behaviour suite for every driver under the SUT core: references,
 * rollout without downtime under polling, scale, kill and heal, stop and
 * start, logs, exec, shaping of dependents, the same errors for the same
 * mistakes, disposal. A plugin driver runs it with its backend's name:
 * `sutBehaviourSuite('mine', () => new MyBackend())`; what it cannot do by
 * design it names in `lacks`, and those cases are reported skipped with the reason.
 */
const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');
const SERVER = path.join(REPO_ROOT, 'fixtures', 'apps', 'mock-app', 'server.js');

const SPEC = `
name: behaviour
services:
  - name: api
    image: local/mock-app
    version: "1.0.0"
    command: ["node", "${SERVER}"]
    port: 8080
    ports: { grpc: 9090 }
    replicas: 2
    ready: { http: /healthz, timeout: 60s }
  - name: peer
    image: local/mock-app
    version: "1.0.0"
    command: ["node", "${SERVER}"]
    port: 8080
    replicas: 1
    env: { API_URL: "\${api.url}", API_GRPC_PORT: "\${api.ports.grpc}" }
    ready: { http: /healthz, timeout: 60s }
`;

/** `CODE: message (hint)`, or what it returned */
async function mistake(fn: () => unknown): Promise<string> {
  try {
    await fn();
    return 'no error';
  } catch (e) {
    if (!(e instanceof TopasError)) throw e;
    return `${e.code}: ${e.message}${e.hint ? ` (${e.hint})` : ''}`;
  }
}

/** One GET on a fresh connection: status and body, or the network error's code as status. */
function get(url: string): Promise<{ status: string; body: string }> {
  return new Promise((resolve) => {
    const req = http.get(url, { agent: false, timeout: 3000 }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: String(res.statusCode), body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (e: NodeJS.ErrnoException) => resolve({ status: e.code ?? e.message, body: '' }));
  });
}

async function status(url: string): Promise<string> {
  return (await get(url)).status;
}

/** What `peer` gets for GET ${api.url}/healthz, asked from inside the SUT (its env, its network). */
async function fromPeer(s: Sut): Promise<string> {
  const script = 'fetch(process.env.API_URL + "/healthz").then((r) => console.log(r.status), (e) => console.log("error " + e.message))';
  const r = await s.exec('peer', ['node', '-e', script]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.trim();
}

/** The errors each backend gave, to compare the next one with. */
const seen = new Map<string, Record<string, string>>();

/** Capabilities a driver may lack, each with why: the cases that need it are skipped, visibly. */
export interface BehaviourOptions {
  lacks?: {
    /** `shapeDependents`: dependents' traffic does not go through topas's proxies */
    shapeDependents?: string;
    /** `detach()`: the SUT cannot outlive the process that started it */
    kept?: string;
  };
}

export function sutBehaviourSuite(name: string, make: () => Backend, opts: BehaviourOptions = {}): void {
  const needs = (capability: keyof NonNullable<BehaviourOptions['lacks']>): { skip?: string } => {
    const why = opts.lacks?.[capability];
    return why ? { skip: `the ${name} backend lacks ${capability}: ${why}` } : {};
  };
  describe(`sut behaviour: ${name}`, () => {
    let sut: Sut | undefined;
    let workDir: string;
    before(async () => {
      workDir = fs.mkdtempSync(path.join(os.tmpdir(), `topas-behaviour-${name}-`));
      const file = path.join(workDir, 'topas.yaml');
      fs.writeFileSync(file, SPEC);
      sut = await make().start(parseAppSpec(SPEC, file), { runId: `bh-${name}-${process.pid}`, workDir: path.join(workDir, 'run'), log: () => {}, shapeDependents: true, processEnv: process.env });
    });
    after(async () => {
      await sut?.dispose();
      fs.rmSync(workDir, { recursive: true, force: true });
    });

    test('the same mistakes give the same errors', async () => {
      const s = sut!;
      const errors: Record<string, string> = {
        'endpoint of an unknown service': await mistake(() => s.endpoint('nope')),
        'an unknown named port': await mistake(() => s.endpoint('api', 'http')),
        'kill of an unknown service': await mistake(() => s.kill('nope')),
        'kill of a replica that does not run': await mistake(() => s.kill('api', { replica: 7 })),
        'scale below zero': await mistake(() => s.scale('api', -1)),
        'apply_service with a fraction of a replica': await mistake(() => s.applyService('api', { replicas: 1.5 })),
        'logs of an unknown service': await mistake(() => s.logs('nope')),
        'exec of nothing': await mistake(() => s.exec('api', [])),
        'wait_ready of an unknown service': await mistake(() => s.waitReady('nope', 1000)),
      };
      assert.equal(errors['endpoint of an unknown service'], 'SCENARIO_FAILED: no service or database named "nope" in app behaviour (known: api, peer)');
      assert.equal(errors['an unknown named port'], 'SCENARIO_FAILED: service api has no port named "http" (named ports: grpc)');
      assert.equal(errors['kill of a replica that does not run'], 'SUT_NOT_UP: service api has no running replica 7 (running: 1, 2)');
      assert.equal(errors['scale below zero'], 'SCENARIO_FAILED: scale api: replicas must be a whole number >= 0, got -1');
      seen.set(name, errors);
      const first = [...seen.values()][0];
      assert.deepEqual(errors, first, 'every backend fails the same way as the first one');
    });

    test('references: a dependent reaches ${api.url} from inside the SUT', async () => {
      assert.equal(await fromPeer(sut!), '200');
      const port = (await sut!.exec('peer', ['node', '-e', 'console.log(process.env.API_GRPC_PORT)'])).stdout.trim();
      assert.match(port, /^\d+$/, 'a named port resolves to a port number');
    });

    test('shaping of dependents: an http_fault on api reaches peer -> api traffic too', needs('shapeDependents'), async () => {
      const shapes = sut!.shaping!();
      shapes.apply('api', { kind: 'http_fault', status: 503, rate: 1 });
      await shapes.settled();
      try {
        assert.equal(await status(`${sut!.endpoint('api')}/healthz`), '503', 'scenarios see the fault');
        assert.equal(await fromPeer(sut!), '503', 'a dependent sees the fault');
      } finally {
        shapes.reset('api');
        await shapes.settled();
      }
      assert.equal(await fromPeer(sut!), '200');
    });

    test('logs of several replicas: one line format, [api-1] / [api-2]', async () => {
      const text = await sut!.logs('api', { tail: 5 });
      assert.match(text, /^\[api-1\] listening on \d+/m);
      assert.match(text, /^\[api-2\] listening on \d+/m);
      assert.doesNotMatch(await sut!.logs('peer', { tail: 5 }), /^\[peer-1\]/m, 'one replica: its lines as they are');
    });

    test('exec runs in the service with its environment and returns its exit code', async () => {
      const r = await sut!.exec('api', ['node', '-e', 'console.log(process.env.PORT ? "has-port" : "no-port"); process.exit(3)']);
      assert.equal(r.code, 3);
      assert.equal(r.stdout.trim(), 'has-port');
    });

    test('rollout without downtime: every request while polling answers, the end is the new version', async () => {
      const s = sut!;
      const seenVersions = new Set<string>();
      const failures: string[] = [];
      let done = false;
      const poll = (async () => {
        for (let i = 0; i < 5000 && !done; i++) {
          const r = await get(`${s.endpoint('api')}/version`);
          if (r.status !== '200') failures.push(r.status);
          else seenVersions.add(JSON.parse(r.body).version);
        }
      })();
      try {
        await s.applyService('api', { version: '1.1.0' });
      } finally {
        done = true;
        await poll;
      }
      assert.deepEqual(failures, [], 'no request failed during the rollout');
      assert.ok(seenVersions.has('1.1.0'), `versions seen: ${[...seenVersions].join(', ')}`);
      const api = (await s.services()).find((x) => x.name === 'api')!;
      assert.equal(api.replicas, 2);
      assert.equal(api.version, '1.1.0');
      for (let i = 0; i < 4; i++) assert.equal(JSON.parse((await get(`${s.endpoint('api')}/version`)).body).version, '1.1.0');
    });

    test('scale up and down changes the replicas that answer', async () => {
      const s = sut!;
      await s.scale('api', 3);
      let api = (await s.services()).find((x) => x.name === 'api')!;
      assert.equal(api.replicas, 3);
      assert.equal(api.ready, true);
      assert.equal(s.endpointMap().api.urls.length, 3);
      await s.scale('api', 2);
      api = (await s.services()).find((x) => x.name === 'api')!;
      assert.equal(api.replicas, 2);
      assert.equal(s.endpointMap().api.urls.length, 2);
    });

    test('a killed replica leaves rotation and is replaced; wait_ready waits for it', async () => {
      const s = sut!;
      await s.kill('api', { replica: 1 });
      await s.waitReady('api', 60_000);
      const api = (await s.services()).find((x) => x.name === 'api')!;
      assert.equal(api.replicas, 2);
      assert.equal(api.ready, true);
      for (const url of s.endpointMap().api.urls) assert.equal(await status(`${url}/healthz`), '200');
    });

    test('stop and start: nothing answers in between, the declared count comes back', async () => {
      const s = sut!;
      await s.stop('peer');
      const stopped = (await s.services()).find((x) => x.name === 'peer')!;
      assert.equal(stopped.replicas, 0);
      assert.equal(await mistake(() => s.endpoint('peer')), 'SUT_NOT_UP: service peer has no running replica');
      await s.start('peer');
      await s.waitReady('peer', 60_000);
      assert.equal(await status(`${s.endpoint('peer')}/healthz`), '200');
      assert.equal(await fromPeer(s), '200');
    });

    test('a started SUT is disposed when its `await using` block ends', async () => {
      const dir = path.join(workDir, 'using');
      fs.mkdirSync(dir);
      const file = path.join(dir, 'topas.yaml');
      const one = `name: behaviour-using\nservices:\n  - name: api\n    image: local/mock-app\n    version: "1.0.0"\n    command: ["node", "${SERVER}"]\n    port: 8080\n    ready: { http: /healthz, timeout: 60s }\n`;
      fs.writeFileSync(file, one);
      let urls: string[] = [];
      let disposedOne: Sut | undefined;
      {
        await using s = await make().start(parseAppSpec(one, file), { runId: `bhu-${name}-${process.pid}`, workDir: path.join(dir, 'run'), log: () => {}, processEnv: process.env });
        urls = (await s.services()).flatMap((x) => x.endpoints);
        assert.equal(urls.length, 1);
        assert.equal(await status(`${urls[0]}/healthz`), '200');
        assert.equal(s.lifecycle, 'running');
        disposedOne = s;
      }
      assert.equal(disposedOne?.lifecycle, 'disposed');
      assert.notEqual(await status(`${urls[0]}/healthz`), '200', 'the replica still answers after the block');
    });

    test('kept and disposed are distinct states: detach keeps it running, dispose removes it', needs('kept'), async () => {
      const s = sut!;
      assert.equal(s.lifecycle, 'running');
      await s.detach();
      assert.equal(s.lifecycle, 'kept');
      const url = (await s.services()).flatMap((x) => x.endpoints)[0];
      assert.equal(await status(`${url}/healthz`), '200', 'a kept SUT keeps running');
      await s.dispose();
      assert.equal(s.lifecycle, 'disposed');
      assert.notEqual(await status(`${url}/healthz`), '200');
    });
  });
}
