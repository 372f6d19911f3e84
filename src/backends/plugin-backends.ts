import type { Config } from '@oclif/core';
import type { Backend } from './backend';
import { registerBackend } from './registry';

/** What a plugin's `backends` hook receives: call `register` for each backend it brings. */
export type BackendsHookOptions = {
  register: (name: string, factory: () => Backend) => void;
};

const done = new WeakSet<Config>();

/**
 * Backends from oclif plugins (the kubernetes backend lives in
 * plugins/kubernetes): each plugin declares `"hooks": {"backends": "./dist/hooks/backends"}`
 * and registers by name. Core never imports a plugin.
 */
export async function registerPluginBackends(config: Config): Promise<void> {
  if (done.has(config)) return;
  done.add(config);
  const opts: BackendsHookOptions = { register: registerBackend };
  const result = await config.runHook('backends', opts);
  for (const f of result.failures) process.emitWarning(`plugin ${f.plugin.name}: backends hook failed: ${f.error.message}`);
}
