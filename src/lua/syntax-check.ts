import fs from 'node:fs';
import type { LuaEngine } from 'wasmoon';
import { LuaReturn } from 'wasmoon';
import type { Problem } from '../errors';
import { chunkName, luaFactory } from './engine';

let checker: Promise<LuaEngine> | undefined;

/**
 * Compiles a scenario without running it. Problems come as `file.lua:LINE`
 * (relative to baseDir) with Lua's message, e.g. `'end' expected near <eof>`.
 */
export async function checkLuaSyntax(file: string, baseDir: string): Promise<Problem[]> {
  const rel = chunkName({ file, baseDir });
  let source: string;
  try {
    source = await fs.promises.readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return [{ path: rel, message: code === 'ENOENT' ? 'file not found' : `cannot read: ${(err as Error).message}` }];
  }
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
