/**
 * Where a SUT is in its life, the same on every backend:
 * - `running`: this process started it and removes it on dispose;
 * - `kept`: it outlives this process (`topas up`, --keep, or a run attached to
 *   such a SUT): detach lets go of it, `topas down` removes it;
 * - `disposed`: everything it made is gone (or going); operations fail.
 */
export type SutLifecycle = 'running' | 'kept' | 'disposed';

export function lifecycleOf(flags: { disposed: boolean; kept: boolean }): SutLifecycle {
  if (flags.disposed) return 'disposed';
  return flags.kept ? 'kept' : 'running';
}
