import { isSea } from './assets';

/**
 * What to run for a service whose command starts with `node`: this same Node
 * normally; inside the single executable process.execPath is topas itself
 * (a SEA always runs its own main script), so the `node` on PATH.
 */
export function nodeExecutable(): string {
  return isSea() ? 'node' : process.execPath;
}
