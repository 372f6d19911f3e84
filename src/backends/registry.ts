import type { Backend } from './backend';
import { TopasError, type Problem } from '../errors';
import type { AppSpec } from '../spec/app-spec';

/** name -> factory. `local` and `docker` register themselves in src/backends/index.ts; plugins add theirs through the `topas:backends` oclif hook (plugin-backends.ts). */
const factories = new Map<string, () => Backend>();
/** the names that came through registerPluginBackend, so a later config can forget them */
const fromPlugins = new Set<string>();

/** The backends topas brings; `--backend auto` tries them in this order, then plugin backends. */
export const BUILT_IN_BACKENDS = ['docker', 'local'] as const;

export function registerBackend(name: string, factory: () => Backend): void {
  factories.set(name, factory);
}

/**
 * A plugin's backend: never one of the built-in names (nor `auto`), so a plugin
 * cannot take over `local` or `docker`. Returns why it was refused, else undefined.
 */
export function registerPluginBackend(name: string, factory: () => Backend): string | undefined {
  if (name === 'auto' || (BUILT_IN_BACKENDS as readonly string[]).includes(name)) return `"${name}" is a built-in backend name; a plugin cannot replace it`;
  if (!/^[a-z][a-z0-9-]*$/.test(name)) return `"${name}" is not a backend name (lower-case letters, digits and -)`;
  factories.set(name, factory);
  fromPlugins.add(name);
  return undefined;
}

/** Forget what plugins registered (what topas registered itself stays). */
export function clearPluginBackends(): void {
  for (const name of fromPlugins) factories.delete(name);
  fromPlugins.clear();
}

/** The backends plugins added, in the order they registered. */
export function pluginBackendNames(): string[] {
  return [...factories.keys()].filter((n) => !(BUILT_IN_BACKENDS as readonly string[]).includes(n));
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

/**
 * The checks of the backend `--backend` names, for the spec loader: a spec with
 * problems of its own reports this backend's beside them, in one error. None
 * for `auto` (no one backend's rules apply before one is chosen). Throws
 * INVALID_FLAGS for an unknown name.
 */
export function backendChecks(name: string): { backend: string; problems(spec: AppSpec): Problem[] } | undefined {
  checkBackendName(name);
  if (name === 'auto') return undefined;
  // made only when the spec has problems of its own (docker's loads testcontainers)
  return {
    backend: name,
    problems: (spec) => {
      const backend = getBackend(name);
      return backend.validate?.(spec) ?? [];
    },
  };
}
