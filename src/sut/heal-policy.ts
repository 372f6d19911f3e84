/**
 * One self-healing policy for every backend: a service whose replicas died is
 * brought back to its declared count at once; when that fails, the next try
 * waits 500 ms, doubling per failure, at most 10 s (so a dependency that comes
 * back is noticed within 10 s, well inside a test's time).
 */
export const HEAL_POLICY = { firstRetryMs: 500, maxRetryMs: 10_000 } as const;

/** The wait before the next heal after `failures` failed ones in a row (>= 1). */
export function healBackoffMs(failures: number): number {
  return Math.min(HEAL_POLICY.maxRetryMs, HEAL_POLICY.firstRetryMs * 2 ** Math.max(0, failures - 1));
}
