import * as fs from 'node:fs';
import type { LuaEngine } from 'wasmoon';
import { LuaReturn } from 'wasmoon';
import type { Problem } from '../errors';
import { luaFactory } from './lua-factory';
import { chunkName } from './scenario-files';
import { isBuiltinModule } from './data-files';
import { libChunkText, literalRequires, resolveLibModule } from './require-loader';

let checker: Promise<LuaEngine> | undefined;

/**
 * Compiles a scenario without running it, and the project modules it
 * requires by a literal name (`require("lib.auth")`), transitively. Problems
 * come as `file.lua:LINE` (relative to baseDir) with Lua's message, e.g.
 * `'end' expected near <eof>`. A module that cannot be found is left to run
 * time (a require inside pcall may probe for it on purpose).
 */
export async function checkLuaSyntax(file: string, baseDir: string, rootDir?: string): Promise<Problem[]> {
  const rel = chunkName({ file, baseDir });
  let source: string;
  try {
    source = await fs.promises.readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return [{ path: rel, message: code === 'ENOENT' ? 'file not found' : `cannot read: ${(err as Error).message}` }];
  }
  const problems = await compile(source, rel);
  const seen = new Set<string>();
  const queue = literalRequires(source);
  while (queue.length > 0) {
    const name = queue.shift()!;
    if (isBuiltinModule(name)) continue;
    let mod;
    try {
      mod = resolveLibModule(name, { file, baseDir, rootDir });
    } catch {
      continue;
    }
    if (seen.has(mod.file)) continue;
    seen.add(mod.file);
    problems.push(...(await compile(libChunkText(mod.source), mod.chunk)));
    // a module's own requires resolve from the requiring scenario, as at run time
    queue.push(...literalRequires(mod.source));
  }
  return problems;
}

async function compile(source: string, rel: string): Promise<Problem[]> {
  checker ??= luaFactory().createEngine({ openStandardLibs: false, enableProxy: false, injectObjects: false });
  const engine = await checker;
  const G = engine.global.address;
  const lua = engine.global.lua;
  // the same chunk name as at run time, so the line numbers match
  const status = lua.luaL_loadbufferx(G, source, lua.module.lengthBytesUTF8(source), `@${rel}`, 't');
  const message = status === LuaReturn.Ok ? '' : lua.lua_tolstring(G, -1, null);
  lua.lua_settop(G, 0);
  if (status === LuaReturn.Ok) return [];
  const m = /^(.*?):(\d+): ([\s\S]*)$/.exec(message);
  if (m) return [{ path: `${m[1]}:${m[2]}`, message: m[3] }];
  return [{ path: rel, message }];
}
