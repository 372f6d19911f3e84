import type { Config, Hook } from '@oclif/core';
import { registerPluginBackends } from '../backends/plugin-backends';
import { pluginBackendNames } from '../backends/registry';
import { backendFlagHelp } from './common-flags';

/**
 * oclif's `init` hook (package.json oclif.hooks), before a command or help
 * runs: plugins register their backends, and --backend's help (read from the
 * command manifest, not the classes) names them.
 */
const hook: Hook<'init'> = async function ({ config }) {
  // the hook receives the Config class's instance (its options are typed by the interface)
  await registerPluginBackends(config as Config);
  const help = backendFlagHelp(pluginBackendNames());
  for (const command of config.commands) {
    const flag = command.flags?.backend;
    // topas's own commands only: a plugin's `--backend` means what that plugin says
    if (flag && command.pluginName === config.name) Object.assign(flag, help);
  }
};

export default hook;
