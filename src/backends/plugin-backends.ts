import type { Config } from '@oclif/core';
import type { Backend } from './backend';
import { clearPluginBackends, registerPluginBackend } from './registry';

/** What a plugin's `topas:backends` hook receives: call `register` for each backend it brings. */
export type BackendsHookOptions = {
  register: (name: string, factory: () => Backend) => void;
};

/**
 * A plugin's `topas:backends` hook (`module.exports = hook`): registers its
 * backends by name. Never `local`, `docker` or `auto`: those are refused.
 */
export type BackendsHook = (opts: BackendsHookOptions) => Promise<void> | void;

const done = new WeakSet<Config>();

/**
 * Backends from oclif plugins (the kubernetes backend lives in
 * plugins/kubernetes): each plugin declares `"hooks": {"topas:backends": "./dist/hooks/backends"}`
 * and registers by name, never as `local`, `docker` or `auto`. Core never imports a plugin.
 */
export async function registerPluginBackends(config: Config): Promise<void> {
  if (done.has(config)) return;
  done.add(config);
  // the backends of this config's plugins only: a plugin uninstalled since an earlier
  // in-process run (tests) is gone
  clearPluginBackends();
  const opts: BackendsHookOptions = {
    register: (name, factory) => {
      const refused = registerPluginBackend(name, factory);
      if (refused) process.emitWarning(`a plugin's backend was not registered: ${refused}`);
    },
  };
  // `topas:backends` is the hook; plain `backends` is what plugins written before it declare
  for (const hook of ['topas:backends', 'backends']) {
    const result = await config.runHook(hook, opts);
    for (const f of result.failures) process.emitWarning(`plugin ${f.plugin.name}: ${hook} hook failed: ${f.error.message}`);
  }
}
