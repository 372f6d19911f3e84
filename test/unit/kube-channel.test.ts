import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ChannelEndpoint, decodeValue, encodeValue, type ChannelStore } from '../../plugins/kubernetes/src/channel';
import { localize } from '../../plugins/kubernetes/src/pod-worker';
import { inClusterEndpoints } from '../../plugins/kubernetes/src/pod-transport';
import { collectLoadFiles, filesConfigMapData, filesFromConfigMap } from '../../plugins/kubernetes/src/load-files';
import type { ToLoadWorker } from '../../src/run/worker-protocol';

/**
 * A fake of the channel ConfigMap and the API server in front of it: merge
 * patches of its data, each write a new version; watchers see versions after
 * a delay, and with `lossy` some versions are never shown (a watch that broke
 * and re-listed later), as a real watch may.
 */
class FakeObject {
  data: Record<string, string> = {};
  writes: Array<Record<string, string>> = [];
  watchers: Array<(d: Record<string, string>) => void> = [];
  failNext = 0;
  lossy = false;
  private n = 0;
  store(): ChannelStore {
    return {
      write: async (fields) => {
        await new Promise((r) => setTimeout(r, 1));
        if (this.failNext > 0) {
          this.failNext--;
          throw new Error('409 conflict (fake)');
        }
        this.data = { ...this.data, ...fields };
        this.writes.push(fields);
        const snapshot = { ...this.data };
        const skip = this.lossy && this.n++ % 3 === 1;
        if (!skip) for (const w of this.watchers) setTimeout(() => w(snapshot), 2);
      },
    };
  }
}

function pair(obj: FakeObject, o: { maxBatchBytes?: number } = {}) {
  const toWorker: unknown[] = [];
  const toCli: unknown[] = [];
  const cli = new ChannelEndpoint<unknown, unknown>(obj.store(), (m) => toCli.push(m), { side: 'down', debounceMs: 1, ackDelayMs: 5, ...o });
  const worker = new ChannelEndpoint<unknown, unknown>(obj.store(), (m) => toWorker.push(m), { side: 'up', debounceMs: 1, ackDelayMs: 5, ...o });
  obj.watchers.push((d) => cli.receive(d), (d) => worker.receive(d));
  return { cli, worker, toWorker, toCli };
}

async function until(check: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('kubernetes load channel: messages through one object, windows and acknowledgements', () => {
  test('both directions arrive complete, in order, once, and are acknowledged', async () => {
    const obj = new FakeObject();
    const { cli, worker, toWorker, toCli } = pair(obj);
    for (let i = 0; i < 50; i++) cli.send({ type: 'down', i });
    for (let i = 0; i < 80; i++) worker.send({ type: 'up', i });
    await until(() => toWorker.length === 50 && toCli.length === 80);
    assert.deepEqual(toWorker.map((m) => (m as { i: number }).i), [...Array(50).keys()]);
    assert.deepEqual(toCli.map((m) => (m as { i: number }).i), [...Array(80).keys()]);
    assert.equal(await worker.flush(2000), true, 'the worker learns the CLI has everything');
    assert.equal(await cli.flush(2000), true);
    // coalesced: far fewer writes than messages
    assert.ok(obj.writes.length < 40, `${obj.writes.length} writes for 130 messages`);
  });

  test('versions a watch never showed, and failed writes, lose nothing', async () => {
    const obj = new FakeObject();
    obj.lossy = true;
    const { cli, worker, toWorker, toCli } = pair(obj);
    for (let round = 0; round < 20; round++) {
      if (round === 5) obj.failNext = 2;
      cli.send({ round });
      worker.send({ round });
      await new Promise((r) => setTimeout(r, 3));
    }
    // a lossy watch shows a later version sooner or later: a last message from each side does it
    await until(() => toWorker.length >= 20 && toCli.length >= 20, 5000).catch(() => undefined);
    cli.send({ round: 20 });
    worker.send({ round: 20 });
    await until(() => toWorker.length === 21 && toCli.length === 21, 5000);
    assert.deepEqual(toWorker.map((m) => (m as { round: number }).round), [...Array(21).keys()]);
    assert.deepEqual(toCli.map((m) => (m as { round: number }).round), [...Array(21).keys()]);
  });

  test('a window is bounded: big messages go over several writes, each at most the bound (one message alone may pass it)', async () => {
    const obj = new FakeObject();
    const { worker, toCli } = pair(obj, { maxBatchBytes: 10_000 });
    const big = 'x'.repeat(3000);
    for (let i = 0; i < 20; i++) worker.send({ i, big });
    worker.send({ i: 20, big: 'y'.repeat(25_000) });
    await until(() => toCli.length === 21);
    const sizes = obj.writes.filter((w) => w.up).map((w) => w.up.length);
    assert.ok(sizes.length >= 7, `${sizes.length} writes`);
    for (const s of sizes) assert.ok(s <= 10_000 || JSON.parse(obj.writes.find((w) => w.up?.length === s)!.up).m.length === 1, `window of ${s} bytes`);
    assert.deepEqual(toCli.map((m) => (m as { i: number }).i), [...Array(21).keys()]);
  });

  test('the codec keeps what structured clone keeps and JSON loses', () => {
    const v = { a: undefined, n: NaN, inf: -Infinity, z: -0, m: new Map<unknown, unknown>([['k', [1, undefined]]]), s: new Set([1, 2]), d: new Date(5), b: new Uint8Array([1, 2, 3]), big: 12n, $topas: 'plain key', nested: [{ x: null }] };
    const back = decodeValue(encodeValue(v)) as typeof v;
    assert.deepEqual(back, v);
    assert.ok(Object.is(back.z, -0));
    assert.ok('a' in back);
  });

  test("a worker pod writes the script's text into its own folder (no path of the CLI's machine is read) and takes the variables from the run's Secret", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'localize-'));
    try {
      const msg = { type: 'load-init', init: { file: '/home/me/project/tests/load.lua', source: 'function iteration() end', baseDir: '/home/me/project', env: { A: '1' } } } as unknown as ToLoadWorker;
      const out = localize(msg, dir, { SECRET: 's3' }) as Extract<ToLoadWorker, { type: 'load-init' }>;
      assert.equal(out.init.file, path.join(dir, 'load.lua'));
      assert.equal(out.init.baseDir, dir);
      assert.equal(fs.readFileSync(out.init.file, 'utf8'), 'function iteration() end');
      // the variables come from the run's Secret
      assert.deepEqual(out.init.env, { A: '1', SECRET: 's3' });
      assert.equal(localize({ type: 'load-stop', abort: false }, dir, {}).type, 'load-stop');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('the worker pods reach services by their Service DNS names', () => {
    const spec = { name: 'shop', services: [{ name: 'api', port: 8080, ports: {}, tls: false }], databases: [] } as never;
    const map = inClusterEndpoints(spec, 'run-1', 'ns1');
    assert.match(map.api.urls[0], /^http:\/\/shop-api-[0-9a-f]{6}\.ns1\.svc\.cluster\.local:8080$/);
  });
});

describe('kubernetes load workers: a pod that ends is a lost worker, and never comes back into the run', () => {
  test("the first pod of an index owns it; its container's end is the worker's exit; a replacement is ignored; stopped workers end quietly", async () => {
    const { LoadRunGroup } = await import('../../plugins/kubernetes/src/load-job');
    const patched: unknown[] = [];
    const cluster = {
      namespace: 'ns1',
      kc: { makeApiClient: () => ({ patchNamespacedCustomObjectStatus: async () => undefined }) },
      core: { patchNamespacedConfigMap: async (req: unknown) => void patched.push(req) },
    } as never;
    const group = new LoadRunGroup({ cluster, app: 'shop', sutRunId: 'run-1', parent: async () => ({ name: 'p', uid: 'u' }), env: {}, log: () => undefined }, 'run-1', 3);
    const events: Array<[number, string, unknown]> = [];
    group.workers.forEach((w, i) => (w.handler = (ev) => events.push([i, ev.type, ev.type === 'error' ? ev.error.message : ev.type === 'exit' ? ev : undefined])));
    const pod = (name: string, index: number, status: Record<string, unknown> = { phase: 'Running' }) => ({ metadata: { name, annotations: { 'batch.kubernetes.io/job-completion-index': String(index) } }, status });
    const onPod = (type: string, p: unknown) => (group as unknown as { onPod(t: string, p: unknown): void }).onPod(type, p);
    onPod('ADDED', pod('shop-load-1-aaaaa', 1));
    assert.equal(group.workers[1].pod, 'shop-load-1-aaaaa');
    // its container killed: lost, said once
    const killed = { phase: 'Failed', containerStatuses: [{ state: { terminated: { exitCode: 137, reason: 'Error' } } }] };
    onPod('MODIFIED', pod('shop-load-1-aaaaa', 1, killed));
    onPod('MODIFIED', pod('shop-load-1-aaaaa', 1, killed));
    assert.deepEqual(events.map(([i, t]) => [i, t]), [[1, 'error'], [1, 'exit']]);
    assert.match(String(events[0][2]), /shop-load-1-aaaaa ended \(Error, exit code 137\)/);
    assert.deepEqual(events[1][2], { type: 'exit', code: 137, signal: 'SIGKILL' });
    assert.equal(group.workers[1].status.state, 'lost');
    // a replacement pod for that index (were the Job to make one) takes no part
    onPod('ADDED', pod('shop-load-1-bbbbb', 1));
    onPod('MODIFIED', pod('shop-load-1-bbbbb', 1, { phase: 'Succeeded' }));
    assert.equal(group.workers[1].pod, 'shop-load-1-aaaaa');
    assert.equal(events.length, 2);
    // an image that cannot start: lost with the reason
    onPod('ADDED', pod('shop-load-2-ccccc', 2, { phase: 'Pending', containerStatuses: [{ state: { waiting: { reason: 'ErrImageNeverPull', message: 'image topas-runner:x not present' } } }] }));
    assert.match(String(events.find(([i, t]) => i === 2 && t === 'error')?.[2]), /cannot start: ErrImageNeverPull/);
    // worker 0 shut down by the CLI: its pod's end is no error
    (group as unknown as { resolveCreated(ok: boolean): void }).resolveCreated(false);
    onPod('ADDED', pod('shop-load-0-ddddd', 0));
    const stopping = group.stopWorker(group.workers[0], { type: 'shutdown' }, 5000);
    onPod('MODIFIED', pod('shop-load-0-ddddd', 0, { phase: 'Succeeded', containerStatuses: [{ state: { terminated: { exitCode: 0, reason: 'Completed' } } }] }));
    await stopping;
    assert.deepEqual(events.filter(([i]) => i === 0).map(([, t, e]) => [t, (e as { code?: number })?.code]), [['exit', 0]]);
    assert.equal(group.workers[0].status.state, 'stopped');
  });
});

test('the files next to a load script (modules, data) go to the pods; the script itself, other kinds and dot folders do not', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'load-files-'));
  try {
    fs.mkdirSync(path.join(dir, 'lib'));
    fs.mkdirSync(path.join(dir, '.git'));
    fs.writeFileSync(path.join(dir, 'load.lua'), 'function iteration() end');
    fs.writeFileSync(path.join(dir, 'lib', 'auth.lua'), 'return {}');
    fs.writeFileSync(path.join(dir, 'users.csv'), 'name\nalice\n');
    fs.writeFileSync(path.join(dir, 'binary.bin'), Buffer.from([0, 1, 2]));
    fs.writeFileSync(path.join(dir, '.git', 'x.lua'), 'return 1');
    const got = collectLoadFiles(path.join(dir, 'load.lua'));
    assert.deepEqual(got.files.map((f) => f.path), ['lib/auth.lua', 'users.csv']);
    assert.deepEqual(got.left, []);
    const back = filesFromConfigMap(filesConfigMapData(got.files));
    assert.deepEqual(back.map((f) => [f.path, f.content.toString()]), [['lib/auth.lua', 'return {}'], ['users.csv', 'name\nalice\n']]);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
