import type { Backend } from './backend';
import { TopasError } from '../errors';

/** name -> factory. `local` and `docker` register themselves in src/backends/index.ts; plugins add theirs through the `backends` oclif hook (plugin-backends.ts). */
const factories = new Map<string, () => Backend>();

export function registerBackend(name: string, factory: () => Backend): void {
  factories.set(name, factory);
}

export function backendNames(): string[] {
  return [...factories.keys()];
}

export function getBackend(name: string): Backend {
  const f = factories.get(name);
  if (!f) {
    throw new TopasError('INVALID_FLAGS', `unknown backend "${name}"`, {
      hint: `available: ${[...factories.keys(), 'auto'].join(', ')}`,
    });
  }
  return f();
}

/** Before anything starts: `auto` or a registered backend, else INVALID_FLAGS naming --backend. */
export function checkBackendName(name: string): void {
  if (name === 'auto' || factories.has(name)) return;
  const known = [...factories.keys(), 'auto'];
  throw new TopasError('INVALID_FLAGS', `--backend: unknown backend "${name}"`, {
    problems: [{ path: '--backend', message: `unknown backend "${name}"; available: ${known.join(', ')}` }],
  });
}
