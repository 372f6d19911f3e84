import { Worker } from 'node:worker_threads';
import { serializeError } from '../errors';
import { getWorkerPath } from '../sea/assets';
import type { StartWorkerOptions, TransportEvent, WorkerTransport } from './transport';

let nextThread = 1;

/** A worker thread of this process (today's default). */
export function threadTransport<In, Out>(opts: StartWorkerOptions): WorkerTransport<In, Out> {
  const worker = new Worker(getWorkerPath(opts.entry));
  let handler: (ev: TransportEvent<Out>) => void = () => undefined;
  let gone = false;
  const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
  worker.on('message', (message: Out) => handler({ type: 'message', message }));
  worker.on('error', (err) => handler({ type: 'error', error: serializeError(err) }));
  worker.on('exit', (code) => {
    gone = true;
    handler({ type: 'exit', code });
  });
  const label = `thread ${nextThread++}`;
  return {
    label,
    get gone() {
      return gone;
    },
    send(msg) {
      if (gone) return;
      try {
        worker.postMessage(msg);
      } catch {
        // exiting: the exit event tells the caller
      }
    },
    on(h) {
      handler = h;
    },
    async stop({ shutdown, graceMs = 2000 } = {}) {
      if (gone) return;
      if (shutdown !== undefined) {
        this.send(shutdown);
        const timer = setTimeout(() => void worker.terminate(), graceMs);
        await exited;
        clearTimeout(timer);
      } else {
        await worker.terminate();
        await exited;
      }
    },
  };
}
