import { setTimeout as delay } from 'node:timers/promises';
import { TopasError } from 'topas';

/**
 * Waiting on a cluster, in one place: the API server is polled (the plugin
 * keeps no watches open between operations), every loop is bounded by a
 * deadline, and an abort (Ctrl-C) ends a wait at once instead of after its
 * next poll.
 */
export const POLL_MS = 250;

export interface PollOptions {
  /** the wait ends with onTimeout's error after this long */
  timeoutMs: number;
  intervalMs?: number;
  signal?: AbortSignal;
  /** errors thrown by the check count as "not yet" (the last one reaches onTimeout); without it they end the wait */
  retryErrors?: boolean;
  /** the error to throw at the deadline; may look at the cluster to say why */
  onTimeout: (lastError: unknown) => Error | Promise<Error>;
}

/** Calls `check` until it returns something other than undefined or false, and returns that. */
export async function poll<T>(check: () => Promise<T | undefined | false>, opts: PollOptions): Promise<T> {
  const deadline = Date.now() + opts.timeoutMs;
  let lastError: unknown;
  for (;;) {
    throwIfAborted(opts.signal);
    try {
      const v = await check();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      if (!opts.retryErrors) throw err;
      lastError = err;
    }
    if (Date.now() > deadline) throw await opts.onTimeout(lastError);
    await sleep(opts.intervalMs ?? POLL_MS, opts.signal);
  }
}

/** Resolves after `ms`; rejects with INTERRUPTED as soon as `signal` aborts. */
export async function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  try {
    await delay(ms, undefined, signal ? { signal } : undefined);
  } catch (err) {
    if (signal?.aborted) throw interrupted(signal);
    throw err;
  }
}

export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw interrupted(signal);
}

function interrupted(signal: AbortSignal): TopasError {
  const reason: unknown = signal.reason;
  return reason instanceof TopasError ? reason : new TopasError('INTERRUPTED', 'start interrupted', { cause: reason });
}

/** `p`, or an error naming `what` when it has not settled within `ms` (the timer does not hold the process). */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
    t.unref();
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(t);
        reject(e);
      },
    );
  });
}
