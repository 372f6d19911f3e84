import { parentPort } from 'node:worker_threads';
import { serializeError } from '../errors';

/** The message a worker process sends about its own uncaught error before it exits (threads have the 'error' event). */
export const CRASH_MESSAGE_TYPE = '__worker-crashed';

/** A worker's side of the transport: the same three calls in a thread or a forked process. */
export interface ParentPort<In, Out> {
  post(msg: Out): void;
  on(handler: (msg: In) => void): void;
  /** lets the worker end: its port closes, and a process exits once its work is done */
  close(): void;
}

let given: ParentPort<unknown, unknown> | undefined;

/**
 * A worker that is neither a thread nor a forked process (a pod talking to
 * its coordinator through the API server) brings its own port: set before
 * the worker's module loads, connectParent returns it.
 */
export function useParentPort<In, Out>(port: ParentPort<In, Out>): void {
  given = port as ParentPort<unknown, unknown>;
}

export function connectParent<In, Out>(): ParentPort<In, Out> {
  if (given) return given as ParentPort<In, Out>;
  if (parentPort) {
    const port = parentPort;
    return {
      post: (msg) => port.postMessage(msg),
      on: (h) => void port.on('message', h),
      close: () => port.close(),
    };
  }
  if (typeof process.send !== 'function') throw new Error('a topas worker runs in a worker thread or a forked process');
  // an uncaught error crosses as a SerializedError, then the process exits as Node would
  const crash = (err: unknown) => {
    try {
      process.send!({ type: CRASH_MESSAGE_TYPE, error: serializeError(err) }, undefined, {}, () => process.exit(1));
    } catch {
      process.exit(1);
    }
    // in case the send never completes
    setTimeout(() => process.exit(1), 1000).unref();
  };
  process.on('uncaughtException', crash);
  process.on('unhandledRejection', crash);
  // the coordinator gone (killed): nothing to work for
  process.on('disconnect', () => process.exit(0));
  // Ctrl-C in a terminal reaches the whole process group: the coordinator decides how its workers stop
  // (a load run stops them and still collects their last reports), so the signal alone must not end one
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => undefined);
  return {
    post: (msg) => {
      if (process.connected) process.send!(msg as never);
    },
    on: (h) => void process.on('message', h as never),
    close: () => {
      // this end closes the channel: not the coordinator going away
      process.removeAllListeners('disconnect');
      if (process.connected) process.disconnect();
      // handles the Lua engines keep (timers, sockets) must not hold the process
      setTimeout(() => process.exit(0), 200).unref();
    },
  };
}
