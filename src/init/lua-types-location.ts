import * as fs from 'node:fs';
import * as path from 'node:path';
import { getEmbeddedLuaTypes } from '../sea/assets';
import { PRIVATE_FILE_MODE, ensurePrivateDir } from '../run/run-record';

/** Where the package keeps lua-types/ (dist/src/init -> package root). */
export const SHIPPED_LUA_TYPES_DIR = path.resolve(__dirname, '..', '..', '..', 'lua-types');

export interface LuaTypesLibrary {
  /** the `workspace.library` entry for .luarc.json: relative to the project when inside it, else absolute */
  library: string;
  /** true when the files were written into the project (single executable) */
  extracted: boolean;
}

/**
 * The LuaLS library path for a project in `projectDir`. From an npm install
 * that is the package's lua-types/ (node_modules-relative when topas is a
 * project dependency); the single executable has no package on disk, so it
 * writes its embedded copy to `.topas/lua-types/`.
 */
export function resolveLuaTypesLibrary(projectDir: string): LuaTypesLibrary {
  const embedded = getEmbeddedLuaTypes();
  if (embedded) {
    const dir = path.join(projectDir, '.topas', 'lua-types');
    ensurePrivateDir(dir);
    for (const [name, text] of Object.entries(embedded)) fs.writeFileSync(path.join(dir, path.basename(name)), text, { mode: PRIVATE_FILE_MODE });
    return { library: '.topas/lua-types', extracted: true };
  }
  return { library: libraryPath(projectDir, SHIPPED_LUA_TYPES_DIR), extracted: false };
}

function libraryPath(projectDir: string, typesDir: string): string {
  const project = realpathOr(projectDir);
  const types = realpathOr(typesDir);
  const rel = path.relative(project, types);
  // only inside the project (e.g. node_modules/topas/lua-types) is a relative path stable
  if (rel && !rel.startsWith('..') && !path.isAbsolute(rel)) return rel.split(path.sep).join('/');
  return types;
}

function realpathOr(p: string): string {
  try {
    return fs.realpathSync(p);
  } catch {
    return path.resolve(p);
  }
}
