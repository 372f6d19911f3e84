import * as path from 'node:path';
import { serializeError, type SerializedError } from '../errors';
import type { FromLoadWorker, LoadWorkerInit, ToLoadWorker } from '../run/worker-protocol';
import type { LogLevel } from '../run/scenario-types';
import { startWorker, type TransportName, type WorkerTransport } from '../workers/transport';
import { workerProcessEnv } from '../workers/worker-env';
import { wallNowMs } from './load-runner';
import type { MetricsSnapshot, SecondBucket } from './metrics';

/**
 * The coordinator's side of one load worker (a thread, or a process with
 * --spread processes): starting it with its init, what it last reported, and
 * the messages of worker-protocol.ts. What the run does with the reports
 * (merging, progress, losing a worker) is load-service.ts's.
 */

const GRACE_MS = 5000;

export interface WorkerSlotHost {
  spread: TransportName;
  /** the run's id: a transport that places the run's workers together (pods) groups them by it */
  runId: string;
  /** handed to the transport (a remote SUT's Sut.remoteWorkers.context) */
  context?: unknown;
  /** a line the worker's script logged */
  log(level: LogLevel, source: string, message: string): void;
  /** a call the worker's script made (sut.*, shape.apply) */
  rpc(method: string, args: unknown[]): Promise<unknown>;
}

/** Starts worker `index` and sends it its init; its reports land in the slot and its callbacks. */
export function spawnWorkerSlot(index: number, init: LoadWorkerInit, host: WorkerSlotHost): WorkerSlot {
  const worker = startWorker<ToLoadWorker, FromLoadWorker>(host.spread, {
    entry: path.join(__dirname, 'load-worker.js'),
    env: workerProcessEnv(),
    run: { id: host.runId, index, workers: init.workers },
    ...(host.context !== undefined ? { context: host.context } : {}),
  });
  let readyResolve!: () => void;
  let doneResolve!: () => void;
  const slot: WorkerSlot = {
    index,
    worker,
    gone: false,
    finished: false,
    errors: [],
    events: { ready: new Promise<void>((r) => (readyResolve = r)), done: new Promise<void>((r) => (doneResolve = r)) },
    resolveDone: () => doneResolve(),
    answers: new Map(),
  };
  const onMessage = (msg: FromLoadWorker) => {
    switch (msg.type) {
      case 'load-ready':
        readyResolve();
        break;
      case 'clock-reply':
        slot.onClock?.(msg.sentMs, msg.workerMs);
        break;
      case 'load-metrics':
        if (slot.finished) break;
        slot.lastReportMs = wallNowMs();
        slot.snapshot = msg.snapshot as MetricsSnapshot;
        slot.activeVus = msg.activeVus;
        slot.allocatedVus = msg.allocatedVus;
        slot.onMetrics?.(msg.buckets as SecondBucket[]);
        break;
      case 'load-done':
        if (slot.finished) break;
        slot.finished = true;
        slot.snapshot = msg.snapshot as MetricsSnapshot;
        slot.activeVus = 0;
        slot.errors = msg.errors;
        slot.onMetrics?.(msg.buckets as SecondBucket[]);
        doneResolve();
        break;
      case 'log':
        host.log(msg.line.level, msg.line.source, msg.line.message);
        break;
      case 'rpc-call':
        host.rpc(msg.method, msg.args).then(
          (value) => post(slot, { type: 'rpc-result', callId: msg.callId, ok: true, value }),
          (err) => post(slot, { type: 'rpc-result', callId: msg.callId, ok: false, error: serializeError(err) }),
        );
        break;
      case 'fatal':
        slot.onFatal?.(msg.error);
        break;
      case 'load-setup-done':
      case 'load-data-set':
      case 'load-teardown-done':
        slot.answers.get(msg.type)?.resolve(msg);
        slot.answers.delete(msg.type);
        break;
    }
  };
  const dropAnswers = (why: string) => {
    for (const a of slot.answers.values()) a.reject(new Error(why));
    slot.answers.clear();
  };
  // an uncaught error in the worker comes as 'error', then 'exit': the first one says why
  worker.on((ev) => {
    if (ev.type === 'message') onMessage(ev.message);
    else if (ev.type === 'error') {
      if (!slot.gone) slot.onFatal?.(ev.error);
      slot.gone = true;
      dropAnswers(ev.error.message);
    } else {
      const why = `exited unexpectedly (${ev.signal ? `killed by ${ev.signal}` : `code ${ev.code}`})`;
      if (!slot.gone) slot.onFatal?.({ name: 'WorkerError', message: why });
      slot.gone = true;
      dropAnswers(why);
    }
  });
  post(slot, { type: 'load-init', init });
  return slot;
}

export interface WorkerSlot {
  index: number;
  worker: WorkerTransport<ToLoadWorker, FromLoadWorker>;
  onClock?: (sentMs: number, workerMs: number) => void;
  gone: boolean;
  /** reported load-done, or was lost */
  finished: boolean;
  /** wall clock of its last metrics report */
  lastReportMs?: number;
  resolveDone(): void;
  snapshot?: MetricsSnapshot;
  activeVus?: number;
  /** VUs the worker has made so far: summed, the summary's vus_max */
  allocatedVus?: number;
  errors: Array<{ message: string; count: number }>;
  events: { ready: Promise<void>; done: Promise<void> };
  onMetrics?: (buckets: SecondBucket[]) => void;
  onFatal?: (e: SerializedError) => void;
  /** requests waiting for the worker's answer, by the answer's type */
  answers: Map<AnswerType, { resolve(msg: FromLoadWorker): void; reject(err: Error): void }>;
}

type AnswerType = 'load-setup-done' | 'load-data-set' | 'load-teardown-done';
type Answer<T extends AnswerType> = Extract<FromLoadWorker, { type: T }>;

/** Sends a request and waits for its answer; a worker that goes meanwhile rejects it. */
export function ask<T extends AnswerType>(slot: WorkerSlot, msg: ToLoadWorker, answer: T): Promise<Answer<T>> {
  if (slot.gone) return Promise.reject(new Error(`load worker ${slot.index} is gone`));
  return new Promise<Answer<T>>((resolve, reject) => {
    slot.answers.set(answer, { resolve: (m) => resolve(m as Answer<T>), reject });
    slot.worker.send(msg);
  });
}

export function post(slot: WorkerSlot, msg: ToLoadWorker): void {
  if (!slot.gone) slot.worker.send(msg);
}

/**
 * How far the worker's wall clock is ahead of ours, from one probe. It is
 * known to half the round trip: an offset within that is no offset (threads
 * and processes of this machine read one clock, and a busy machine's slow
 * round trip must not move their start).
 */
export function clockOffset(slot: WorkerSlot): Promise<number> {
  return new Promise((resolve) => {
    slot.onClock = (sentMs, workerMs) => {
      const nowMs = wallNowMs();
      const offset = workerMs - (sentMs + nowMs) / 2;
      resolve(Math.abs(offset) <= (nowMs - sentMs) / 2 ? 0 : Math.round(offset));
    };
    post(slot, { type: 'clock-probe', sentMs: wallNowMs() });
    // a worker that does not answer (gone) is found lost by its exit; it starts with no correction
    if (slot.gone) resolve(0);
  });
}

export async function closeWorker(slot: WorkerSlot): Promise<void> {
  if (slot.gone) return;
  slot.gone = true;
  await slot.worker.stop({ shutdown: { type: 'shutdown' }, graceMs: GRACE_MS });
}
