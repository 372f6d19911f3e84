import { formatDurationMs } from '../util/duration';
import { splitCount, type ExecutorConfig } from './schedule';

/** A load worker lost while the load ran: which share of the load went missing, and from when. */
export interface LostShare {
  /** 0-based worker index, of `workers` */
  worker: number;
  workers: number;
  /** how the transport names it: "process 12345", "thread 3" */
  label: string;
  /** ms into the load at which it was found gone */
  atMs: number;
  /** ms into the load of its last metrics report (what it ran up to then is in the results); unset if it sent none */
  keptUntilMs?: number;
  reason: string;
}

/**
 * What the lost worker's share was. Arrival-rate executors interleave the
 * iterations (worker w runs k with k % workers == w), so a worker's share is
 * 1/workers of the rate at every instant, ramps included.
 */
export function describeShare(s: Pick<LostShare, 'worker' | 'workers'>, ex: ExecutorConfig): string {
  if (ex.executor === 'constant-vus') return `${splitCount(ex.vus, s.workers, s.worker)} of ${ex.vus} VUs`;
  const rate = ex.executor === 'constant-arrival-rate' ? `, ~${round(ex.rate / s.workers)}/${ex.timeUnitMs === 1000 ? 's' : formatDurationMs(ex.timeUnitMs)}` : '';
  return `1/${s.workers} of the rate (iterations k with k % ${s.workers} = ${s.worker}${rate})`;
}

export function describeLostShare(s: LostShare, ex: ExecutorConfig): string {
  const from = s.keptUntilMs ?? 0;
  const kept = s.keptUntilMs !== undefined ? `its metrics up to ${formatDurationMs(s.keptUntilMs)} are kept` : 'it had reported no metrics yet';
  return `load worker ${s.worker} of ${s.workers} (${s.label}) died ${formatDurationMs(s.atMs)} into the load (${s.reason}); ${kept}, its share, ${describeShare(s, ex)}, is missing from ${formatDurationMs(from)} to the end`;
}

function round(n: number): string {
  return Number.isInteger(n) ? String(n) : n.toFixed(1);
}
