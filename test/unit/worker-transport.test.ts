import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { SPREADS, startWorker, type TransportEvent, type WorkerTransport } from '../../src/workers/transport';
import { workerProcessEnv } from '../../src/workers/worker-env';
import { WORKER_MODE_ARG, runWorkerMode, workerModeArgs } from '../../src/sea/worker-mode';

/**
 * One behaviour suite, run against every transport: what the scenario pool
 * and the load runner rely on must hold for threads and processes alike.
 */
const ENTRY = path.join(__dirname, '..', 'helpers', 'echo-worker.js');
type In = { type: 'echo'; value: unknown } | { type: 'env'; name: string } | { type: 'crash'; message: string } | { type: 'hang' } | { type: 'shutdown' };
type Out = { type: 'echo'; value: unknown } | { type: 'env'; value: string | undefined } | { type: 'ready' };

/** A started worker with its events queued, read one at a time. */
function started(spread: (typeof SPREADS)[number], env?: Record<string, string>) {
  const w: WorkerTransport<In, Out> = startWorker<In, Out>(spread, { entry: ENTRY, env: env ?? workerProcessEnv() });
  const events: Array<TransportEvent<Out>> = [];
  let wake: (() => void) | undefined;
  w.on((ev) => {
    events.push(ev);
    wake?.();
  });
  const next = async (): Promise<TransportEvent<Out>> => {
    // bounded: a transport that never reports fails the test instead of hanging it
    for (let i = 0; i < 200 && events.length === 0; i++) await new Promise<void>((r) => ((wake = r), setTimeout(r, 50)));
    const ev = events.shift();
    if (!ev) throw new Error('no event from the worker within 10s');
    return ev;
  };
  return { w, next };
}

for (const spread of SPREADS) {
  describe(`worker transport: ${spread}`, () => {
    test('messages cross as structured clones, in order', async () => {
      const { w, next } = started(spread);
      try {
        assert.deepEqual(await next(), { type: 'message', message: { type: 'ready' } });
        const value = { n: 1.5, s: 'é\u0000x', list: [1, [2, { deep: true }]], map: new Map([['a', 1]]), date: new Date(0), u: undefined, big: 2n ** 70n, bytes: new Uint8Array([1, 2, 3]) };
        for (let i = 0; i < 50; i++) w.send({ type: 'echo', value: i });
        w.send({ type: 'echo', value });
        for (let i = 0; i < 50; i++) assert.deepEqual(await next(), { type: 'message', message: { type: 'echo', value: i } });
        assert.deepEqual(await next(), { type: 'message', message: { type: 'echo', value } });
      } finally {
        await w.stop({ shutdown: { type: 'shutdown' } });
      }
    });

    test("an uncaught error in the worker arrives as a serialized error, then the exit", async () => {
      const { w, next } = started(spread);
      await next();
      w.send({ type: 'crash', message: 'boom on purpose' });
      const err = await next();
      assert.equal(err.type, 'error');
      assert.ok(err.type === 'error');
      assert.equal(err.error.name, 'TypeError');
      assert.equal(err.error.message, 'boom on purpose');
      assert.ok(!(err.error instanceof Error), 'a plain object, not an Error');
      const exit = await next();
      assert.equal(exit.type, 'exit');
      assert.equal(w.gone, true);
      // sending to a gone worker is nothing, not a throw
      w.send({ type: 'echo', value: 1 });
      await w.stop();
    });

    test('stop with a shutdown message lets the worker end on its own', async () => {
      const { w, next } = started(spread);
      await next();
      await w.stop({ shutdown: { type: 'shutdown' }, graceMs: 10_000 });
      assert.equal(w.gone, true);
      const exit = await next();
      assert.ok(exit.type === 'exit');
      assert.equal(exit.code, 0);
    });

    test('stop ends a worker that never yields once the grace is over', async () => {
      const { w, next } = started(spread);
      await next();
      w.send({ type: 'hang' });
      await w.stop({ shutdown: { type: 'shutdown' }, graceMs: 200 });
      assert.equal(w.gone, true);
      const exit = await next();
      assert.equal(exit.type, 'exit');
    });
  });
}

describe('worker transport: processes only', () => {
  test("a worker process gets the environment it is given, not the host's", async () => {
    process.env.TOPAS_TRANSPORT_TEST_SECRET = 'host-only';
    try {
      const { w, next } = started('processes', { ...workerProcessEnv(), GIVEN: 'yes' });
      try {
        await next();
        w.send({ type: 'env', name: 'TOPAS_TRANSPORT_TEST_SECRET' });
        w.send({ type: 'env', name: 'GIVEN' });
        assert.deepEqual(await next(), { type: 'message', message: { type: 'env', value: undefined } });
        assert.deepEqual(await next(), { type: 'message', message: { type: 'env', value: 'yes' } });
      } finally {
        await w.stop({ shutdown: { type: 'shutdown' } });
      }
    } finally {
      delete process.env.TOPAS_TRANSPORT_TEST_SECRET;
    }
    assert.equal(workerProcessEnv({ PATH: '/bin', AWS_SECRET_ACCESS_KEY: 'x' }).AWS_SECRET_ACCESS_KEY, undefined);
  });

  test('a worker process killed from outside is reported gone, with the signal', async () => {
    const { w, next } = started('processes');
    await next();
    assert.ok(w.pid && w.pid > 0);
    process.kill(w.pid, 'SIGKILL');
    const exit = await next();
    assert.ok(exit.type === 'exit');
    assert.equal(exit.signal, 'SIGKILL');
    assert.equal(w.gone, true);
  });
});

describe('worker processes of the single executable', () => {
  test('the executable starts itself in worker mode, naming the worker of the entry it was given', () => {
    assert.deepEqual(workerModeArgs('/tmp/topas-sea-1-x/load-worker.js'), [WORKER_MODE_ARG, ['load-worker']]);
    assert.deepEqual(workerModeArgs(path.join('dist', 'src', 'run', 'scenario-worker.js')), [WORKER_MODE_ARG, ['scenario-worker']]);
    // a worker the bundle does not hold is an error here, not a child that dies on start
    assert.throws(() => workerModeArgs('/x/echo-worker.js'), /holds no worker named echo-worker/);
  });

  test('any other argv is not worker mode', () => {
    assert.equal(runWorkerMode(['load', 'x.lua']), false);
    assert.equal(runWorkerMode([]), false);
  });
});
