import * as path from 'node:path';
import { Config, Plugin, type Interfaces } from '@oclif/core';
import { COMMANDS } from '../commands/index';
// The plugin's package "exports" hide these; scripts/build-binary.js resolves them to its files.
import AutocompleteIndex from '@oclif/plugin-autocomplete/lib/commands/autocomplete/index';
import AutocompleteCreate from '@oclif/plugin-autocomplete/lib/commands/autocomplete/create';
import AutocompleteScript from '@oclif/plugin-autocomplete/lib/commands/autocomplete/script';

/**
 * oclif config for the single executable (scripts/build-binary.js). The
 * binary has no package on disk, so oclif gets everything handed to it: the
 * package.json (inlined at build time), and a root plugin whose command table
 * is filled in before it loads, so explicit discovery never reads a file.
 * Plugin commands (autocomplete) are bundled into that table for the same reason.
 */
declare const __TOPAS_PJSON__: Interfaces.PJSON;

export const SEA_COMMANDS = {
  ...COMMANDS,
  autocomplete: AutocompleteIndex,
  'autocomplete:create': AutocompleteCreate,
  'autocomplete:script': AutocompleteScript,
};

/** `packageJson` defaults to the package.json the build inlined. */
export async function loadSeaConfig(packageJson: Interfaces.PJSON = __TOPAS_PJSON__): Promise<Config> {
  const pjson: Interfaces.PJSON = { ...packageJson, oclif: { ...packageJson.oclif, plugins: [] } };
  // The folder holding the binary: oclif derives nothing from it but a root path.
  const root = path.dirname(process.execPath);
  const plugin = new Plugin({ isRoot: true, pjson, root, name: pjson.name });
  (plugin as unknown as { commandCache: Record<string, unknown> }).commandCache = SEA_COMMANDS;
  await plugin.load();
  // plugins given up front: oclif loads no user/core plugins from disk
  return Config.load({ root, pjson, plugins: new Map([[plugin.name, plugin]]) });
}

