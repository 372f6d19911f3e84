import { setMaxListeners } from 'node:events';
import type { LuaModuleInstance } from './modules';

/**
 * One virtual user of a VuHost (vu-host.ts): its coroutines and registry
 * refs, the module instances it required, and the Lua loop its script runs
 * in, which the host drives with numbered commands.
 */

/** What a VU reports after its script's top level ran. */
export interface VuScriptInfo {
  /** the script's global `options` (plain JS data) */
  options: unknown;
  hasIteration: boolean;
  hasSetup: boolean;
  hasTeardown: boolean;
}

export type VuCommandResult = { ok: true; value: unknown } | { ok: false; error: string };

// Appended to the script, which runs inside `do ... end` so a top-level
// `return` ends its block, not the VU setup; line 1 keeps its numbering.
export const VU_PREFIX = 'local __topas_yield, __topas_xpcall, __topas_tostring = coroutine.yield, xpcall, tostring; do ';
export const VU_LOOP = String.raw`
end
local __topas_ctx = { vu = 0, iteration = 0 }
-- every command runs in a fresh coroutine that returns when done: ending a
-- coroutine is cheap, while a yield unwinds the wasm stack (a JS exception)
local function __topas_run(cmd, a, b)
  if cmd >= 0 then
    -- no pcall: an error ends this coroutine, which the driver resets (one C frame less to unwind per yield)
    __topas_ctx.iteration = cmd
    iteration(__topas_ctx)
    return true
  elseif cmd == -1 then
    if setup ~= nil then return __topas_xpcall(setup, __topas_tostring) end
    return true
  elseif cmd == -2 then
    if teardown ~= nil then
      local ok, res = __topas_xpcall(teardown, __topas_tostring, a)
      if ok then return true end
      return false, res
    end
    return true
  elseif cmd == -3 then
    __topas_ctx.data = a
    __topas_ctx.vu = b
  end
  return true
end
__topas_yield(-1, options, iteration ~= nil, setup ~= nil, teardown ~= nil, __topas_run)
`;

export const OK: VuCommandResult = Object.freeze({ ok: true, value: undefined }) as VuCommandResult;
export const CMD_SETUP = -1;
export const CMD_TEARDOWN = -2;
export const CMD_CONTEXT = -3;
export const YIELD_INIT = -1;

export type VuState = 'init' | 'idle' | 'busy' | 'dead';

export class Vu {
  state: VuState = 'init';
  /** the coroutine running now: the init one, then one per command */
  L = 0;
  /** registry refs: the init coroutine, the VU's command function, the command coroutine */
  initRef = 0;
  runRef = 0;
  cmdRef = 0;
  cmdL = 0;
  pending: PromiseLike<unknown> | undefined;
  modules: LuaModuleInstance[] = [];
  /** the VU's instance of each module it required, by name: what the shared export bindings call into */
  readonly instances = new Map<string, LuaModuleInstance>();
  readonly abort = new AbortController();
  /** resolves the command in progress */
  onDone: ((r: VuCommandResult) => void) | undefined;
  /** async calls made during the command in progress */
  asyncCalls = 0;
  info: VuScriptInfo | undefined;
  onResolved: (value: unknown) => void = () => undefined;
  onRejected: (err: unknown) => void = () => undefined;
  /** the error that killed the VU, if it died */
  deathError: string | undefined;
  /**
   * Lua heap bytes put down to this VU: the heap's growth while it ran
   * (resumes, and the values pushed for them) since it was last measured.
   * Lua keeps no per-coroutine account (VUs share one heap), and a VU's
   * frees land on whoever runs the collector: over the cap, it is measured.
   */
  memBytes = 0;

  constructor(
    readonly id: number,
    readonly name: string,
  ) {
    // every request in flight listens on it; a VU may run many at once from coroutines
    setMaxListeners(0, this.abort.signal);
  }
}
