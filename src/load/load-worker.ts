/**
 * Worker entry for `topas load` (a thread, or a process with --spread processes): hosts one LoadRunner (a VU pool in one
 * Lua engine) and talks to the main thread with the messages of
 * worker-protocol.ts (ToLoadWorker / FromLoadWorker).
 */
import { RpcClient } from '../run/rpc-client';
import { serializeError } from '../errors';
import type { FromLoadWorker, ToLoadWorker } from '../run/worker-protocol';
import { LoadRunner, wallNowMs } from './load-runner';

import { connectParent } from '../workers/parent-port';

// a worker thread or a worker process (--spread processes): the same messages either way
const port = connectParent<ToLoadWorker, FromLoadWorker>();
const post = (msg: FromLoadWorker) => port.post(msg);

const rpc = new RpcClient((msg) => post(msg));
let runner: LoadRunner | undefined;
/**
 * Test hook: `TOPAS_TEST_CRASH_LOAD_WORKER=<worker>:<ms>` makes that worker
 * throw an uncaught error <ms> after the load starts, as a crash of the
 * thread would (tests of a lost worker; no script can do it on purpose).
 */
let crashAfterMs: number | undefined;

function fatal(err: unknown): void {
  post({ type: 'fatal', error: serializeError(err) });
}

port.on((msg: ToLoadWorker) => {
  switch (msg.type) {
    case 'load-init': {
      const r = new LoadRunner(msg.init, {
        log: (level, source, message) => post({ type: 'log', line: { ts: Date.now(), runId: source, source, level, message } }),
        rpc: (method, args) =>
          rpc.call(`load-${msg.init.worker}`, method, args),
        metrics: (m) => post({ type: 'load-metrics', ...m }),
        done: (m) => post({ type: 'load-done', ...m }),
      });
      runner = r;
      const hook = /^(\d+):(\d+)$/.exec(msg.init.env.TOPAS_TEST_CRASH_LOAD_WORKER ?? '');
      if (hook && Number(hook[1]) === msg.init.worker) crashAfterMs = Number(hook[2]);
      r.prepare().then((vus) => post({ type: 'load-ready', vus }), fatal);
      break;
    }
    case 'load-start':
      runner?.start(msg.startMs);
      if (crashAfterMs !== undefined) {
        setTimeout(() => {
          throw new Error('crashed on purpose (TOPAS_TEST_CRASH_LOAD_WORKER)');
        }, Math.max(0, msg.startMs - Date.now()) + crashAfterMs);
      }
      break;
    case 'clock-probe':
      post({ type: 'clock-reply', sentMs: msg.sentMs, workerMs: wallNowMs() });
      break;
    case 'load-setup':
      if (!runner) break;
      runner.runSetup().then((r) => post(r.ok ? { type: 'load-setup-done', ok: true, value: r.value } : { type: 'load-setup-done', ok: false, error: r.error }), fatal);
      break;
    case 'load-data':
      runner?.setData(msg.data).then(() => post({ type: 'load-data-set' }), fatal);
      break;
    case 'load-teardown':
      if (!runner) break;
      runner.runTeardown(msg.data).then((r) => post({ type: 'load-teardown-done', ok: r.ok, ...(r.ok ? {} : { error: r.error }) }), fatal);
      break;
    case 'load-stop':
      runner?.stop(msg.abort);
      break;
    case 'rpc-result':
      rpc.settle(msg);
      break;
    case 'endpoints':
      runner?.setEndpoints(msg.endpoints);
      break;
    case 'shutdown':
      Promise.resolve(runner?.close())
        .catch(() => undefined)
        .finally(() => port.close());
      break;
  }
});
