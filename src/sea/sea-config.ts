import * as path from 'node:path';
import { Config, Plugin, type Command, type Interfaces } from '@oclif/core';

/**
 * oclif config for the single executable (scripts/build-binary.js). The binary
 * has no package on disk, so oclif gets everything handed to it: the
 * package.json and the command manifest (both made at build time), and a root
 * plugin whose command table is filled in before it loads, so explicit
 * discovery never reads a file. The table loads a command's module only when
 * that command runs, so `--version` and `--help` stay cheap. Plugin commands
 * (autocomplete) are in the same table: the binary loads no plugins from disk.
 */

/** command id -> loads its class (the build generates one `require` per command). */
export type CommandLoaders = Record<string, () => Command.Class>;

/** A command table whose entries load on first access. */
export function lazyCommandTable(loaders: CommandLoaders): Record<string, Command.Class> {
  const table: Record<string, Command.Class> = {};
  for (const [id, load] of Object.entries(loaders)) {
    let loaded: Command.Class | undefined;
    Object.defineProperty(table, id, { enumerable: true, get: () => (loaded ??= load()) });
  }
  return table;
}

export interface SeaConfigInput {
  pjson: Interfaces.PJSON;
  /** oclif.manifest.json content for every command in `loaders` */
  manifest: Interfaces.Manifest;
  loaders: CommandLoaders;
  /** oclif's root: the folder holding the binary (default) */
  root?: string;
}

export async function loadSeaConfig(input: SeaConfigInput): Promise<Config> {
  // no plugins and no hooks from disk: the init hook registers plugins' backends, and the binary loads none
  const pjson: Interfaces.PJSON = { ...input.pjson, oclif: { ...input.pjson.oclif, plugins: [], hooks: {} } };
  const root = input.root ?? path.dirname(process.execPath);
  const plugin = new Plugin({ isRoot: true, pjson, root, name: pjson.name });
  const internals = plugin as unknown as { commandCache: Record<string, Command.Class>; _manifest: () => Promise<Interfaces.Manifest> };
  internals.commandCache = lazyCommandTable(input.loaders);
  internals._manifest = async () => input.manifest;
  await plugin.load();
  // plugins given up front: oclif loads no user/core plugins from disk
  return Config.load({ root, pjson, plugins: new Map([[plugin.name, plugin]]) });
}
