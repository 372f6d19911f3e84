import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { parseAppSpec } from '../../src/spec/load-app-spec';
import type { Backend, Sut } from '../../src/backends/backend';
import { TopasError } from '../../src/errors';
import { LocalBackend } from '../../src/backends/local/local-backend';
import { DockerBackend } from '../../src/backends/docker/docker-backend';

/**
 * One behaviour suite, run against every backend through the SUT core:
 * the same mistake gives the same code and text, logs have one format.
 */
const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');
process.env.TESTCONTAINERS_RYUK_DISABLED = 'true';

const SPEC = `
name: behaviour
services:
  - name: api
    image: local/mock-app
    version: "1.0.0"
    command: ["node", "${path.join(REPO_ROOT, 'fixtures', 'apps', 'mock-app', 'server.js')}"]
    port: 8080
    ports: { grpc: 9090 }
    replicas: 2
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

const backends: Array<[string, () => Backend]> = [
  ['local', () => new LocalBackend()],
  ['docker', () => new DockerBackend()],
];

/** The HTTP status of one GET on a fresh connection, or the network error's code. */
function status(url: string): Promise<string> {
  return new Promise((resolve) => {
    const req = http.get(url, { agent: false, timeout: 3000 }, (res) => {
      res.resume();
      resolve(String(res.statusCode));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  });
}

const seen = new Map<string, Record<string, string>>();

for (const [name, make] of backends) {
  describe(`sut behaviour: ${name}`, () => {
    let sut: Sut | undefined;
    let workDir: string;
    before(async () => {
      workDir = fs.mkdtempSync(path.join(os.tmpdir(), `topas-behaviour-${name}-`));
      const file = path.join(workDir, 'topas.yaml');
      fs.writeFileSync(file, SPEC);
      sut = await make().start(parseAppSpec(SPEC, file), { runId: `bh-${name}-${process.pid}`, workDir: path.join(workDir, 'run'), log: () => {} });
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
        'logs of an unknown service': await mistake(() => s.logs('nope')),
        'exec of nothing': await mistake(() => s.exec('api', [])),
      };
      assert.equal(errors['endpoint of an unknown service'], 'SCENARIO_FAILED: no service or database named "nope" in app behaviour (known: api)');
      assert.equal(errors['an unknown named port'], 'SCENARIO_FAILED: service api has no port named "http" (named ports: grpc)');
      assert.equal(errors['kill of a replica that does not run'], 'SUT_NOT_UP: service api has no running replica 7 (running: 1, 2)');
      seen.set(name, errors);
      const first = [...seen.values()][0];
      assert.deepEqual(errors, first, 'every backend fails the same way as the first one');
    });

    test('a started SUT is disposed when its `await using` block ends', async () => {
      const dir = path.join(workDir, 'using');
      fs.mkdirSync(dir);
      const file = path.join(dir, 'topas.yaml');
      const one = SPEC.replace('name: behaviour', 'name: behaviour-using').replace('replicas: 2', 'replicas: 1');
      fs.writeFileSync(file, one);
      let urls: string[] = [];
      let disposedOne: Sut | undefined;
      {
        await using s = await make().start(parseAppSpec(one, file), { runId: `bhu-${name}-${process.pid}`, workDir: path.join(dir, 'run'), log: () => {} });
        urls = (await s.services()).flatMap((x) => x.endpoints);
        assert.equal(urls.length, 1);
        assert.equal(await status(`${urls[0]}/healthz`), '200');
        assert.equal(s.lifecycle, 'running');
        disposedOne = s;
      }
      assert.equal(disposedOne?.lifecycle, 'disposed');
      assert.notEqual(await status(`${urls[0]}/healthz`), '200', 'the replica still answers after the block');
    });

    test('logs of several replicas: one line format, [api-1] / [api-2]', async () => {
      const text = await sut!.logs('api', { tail: 5 });
      assert.match(text, /^\[api-1\] listening on \d+/m);
      assert.match(text, /^\[api-2\] listening on \d+/m);
    });

    test('kept and disposed are distinct states: detach keeps it running, dispose removes it', async () => {
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
