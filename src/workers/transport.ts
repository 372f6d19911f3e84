import type { SerializedError } from '../errors';

/**
 * The seam between a coordinator (the CLI's main thread) and a worker hosting
 * Lua engines: the scenario pool and the load runner talk to their workers
 * only through it, so where a worker runs (a thread, a process on this
 * machine, a pod a plugin places) is a choice made by name, not code in either.
 *
 * Messages are the callers' tagged unions (worker-protocol.ts); they must be
 * structured-cloneable (threads clone them, processes use the 'advanced'
 * serialization, which is the same algorithm). Errors never cross as Error
 * objects: the worker side sends a SerializedError, the transport reports
 * one for a crash it saw itself.
 */
export type Spread = 'threads' | 'processes';
export const SPREADS: readonly Spread[] = ['threads', 'processes'];
/** A transport's name: the built-in spreads, or one a plugin registered ('pods' of the kubernetes plugin). */
export type TransportName = Spread | (string & {});

/** What a transport reports about its worker: a tagged union on `type`. */
export type TransportEvent<Out> =
  | { type: 'message'; message: Out }
  /** the worker crashed (uncaught error); an 'exit' follows */
  | { type: 'error'; error: SerializedError }
  /** the worker is gone: ended, crashed or was killed (`signal` for a process killed by one) */
  | { type: 'exit'; code: number | null; signal?: string };

export interface WorkerTransport<In, Out> {
  /** how the worker is named in messages: "thread 3", "process 12345" */
  readonly label: string;
  /** the OS process id (processes only): tests kill it */
  readonly pid?: number;
  /** posts a message; once the worker is gone, silently nothing */
  send(msg: In): void;
  /** one handler per event type is enough for every caller: a later call replaces it */
  on(handler: (ev: TransportEvent<Out>) => void): void;
  /**
   * Ends the worker: `shutdown` (when given) is sent first and the worker gets
   * `graceMs` to exit on its own, then it is terminated (killed). Resolves
   * once it is gone.
   */
  stop(opts?: { shutdown?: In; graceMs?: number }): Promise<void>;
  readonly gone: boolean;
}

export interface StartWorkerOptions {
  /** absolute path of the compiled worker entry (e.g. dist/src/load/load-worker.js) */
  entry: string;
  /**
   * The worker's own process environment (processes only: a thread shares
   * its process's). Never the host's whole env: what a script may read comes
   * in the init message; this is for Node itself (e.g. the SEA wasm location).
   */
  env?: Record<string, string>;
  /**
   * Which worker of which run this is: a transport that places a run's
   * workers together (the kubernetes plugin's one Indexed Job of pods) makes
   * them once, for all `workers`, when the first one starts.
   */
  run?: { id: string; index: number; workers: number };
  /** what the SUT's backend hands its transport (Sut.remoteWorkers.context): opaque to core */
  context?: unknown;
}

export type TransportFactory = <In, Out>(opts: StartWorkerOptions) => WorkerTransport<In, Out>;

const registry = new Map<string, () => TransportFactory>();

/** Registers a transport by name (the kubernetes plugin adds 'pods' this way, from its hook). */
export function registerTransport(name: TransportName, load: () => TransportFactory): void {
  registry.set(name, load);
}

export function startWorker<In, Out>(spread: TransportName, opts: StartWorkerOptions): WorkerTransport<In, Out> {
  const load = registry.get(spread);
  if (!load) throw new Error(`no worker transport named ${spread}`);
  return load()<In, Out>(opts);
}

// required lazily: a run on threads never loads child_process' fork path
registerTransport('threads', () => (require('./thread-transport') as typeof import('./thread-transport')).threadTransport);
registerTransport('processes', () => (require('./process-transport') as typeof import('./process-transport')).processTransport);
