import { fork, type ChildProcess } from 'node:child_process';
import { isSea } from '../sea/assets';
import { workerModeArgs } from '../sea/worker-mode';
import type { SerializedError } from '../errors';
import type { StartWorkerOptions, TransportEvent, WorkerTransport } from './transport';
import { CRASH_MESSAGE_TYPE } from './parent-port';

/**
 * A child Node process on this machine (child_process.fork, 'advanced'
 * serialization: the structured clone threads use, so Maps, typed arrays and
 * undefined cross alike). Its environment is only what the caller gives: the
 * script's variables travel in the init message, never through the host's env.
 * The single executable has no worker file to fork: it forks itself in its
 * hidden worker mode (src/sea/worker-mode.ts), the worker's code bundled in it.
 */
export function processTransport<In, Out>(opts: StartWorkerOptions): WorkerTransport<In, Out> {
  const [modulePath, args] = isSea() ? workerModeArgs(opts.entry) : [opts.entry, []];
  const child: ChildProcess = fork(modulePath, args, {
    serialization: 'advanced',
    env: { ...opts.env },
    // the worker's stdout is not ours to print to; its stderr (Node's own crash output) is
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    execArgv: [],
  });
  let handler: (ev: TransportEvent<Out>) => void = () => undefined;
  let gone = false;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.on('message', (message: unknown) => {
    const m = message as { type?: unknown; error?: SerializedError };
    if (m && m.type === CRASH_MESSAGE_TYPE && m.error) handler({ type: 'error', error: m.error });
    else handler({ type: 'message', message: message as Out });
  });
  // fork failed (e.g. EAGAIN): reported as a crash, then as gone
  child.on('error', (err) => {
    if (gone) return;
    handler({ type: 'error', error: { name: 'WorkerError', message: `worker process: ${err.message}` } });
  });
  child.on('exit', (code, signal) => {
    gone = true;
    handler({ type: 'exit', code, ...(signal ? { signal } : {}) });
  });
  return {
    label: `process ${child.pid ?? '?'}`,
    pid: child.pid,
    get gone() {
      return gone;
    },
    send(msg) {
      if (gone || !child.connected) return;
      try {
        child.send(msg as never, (err) => {
          // the channel closed under us: the exit event tells the caller
          void err;
        });
      } catch {
        // as above
      }
    },
    on(h) {
      handler = h;
    },
    async stop({ shutdown, graceMs = 2000 } = {}) {
      if (gone) return;
      if (shutdown !== undefined) this.send(shutdown);
      else child.kill('SIGKILL');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}
