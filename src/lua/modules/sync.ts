import type { LuaModuleContext, LuaModuleInstance } from './module-types';
import { fromLua, luaDurationMs } from '../lua-values';

/**
 * require("sync"): coordination between concurrent instances. Every call goes
 * to the main thread's sync broker (src/sync/sync-broker.ts) through rpc, so
 * instances on different worker threads meet without knowing each other's
 * addresses.
 */
const SYNC_SHIM = String.raw`
local js, h = ...
local Sub = {}
Sub.__index = Sub
Sub.__name = "sync.subscription"
Sub.__tostring = function(s) return "sync.subscription(" .. s.topic .. ")" end
-- a subscription is its own iterator: for v in sync.subscribe("t") do ... end
Sub.__call = function(s) return js.next(s.id, nil) end
local M = {}
M.barrier = js.barrier
M.signal = js.signal
M.wait = js.wait
M.publish = js.publish
function M.subscribe(topic)
  return setmetatable({ id = js.subscribe(topic), topic = topic }, Sub)
end
function M.next(sub, timeout)
  if getmetatable(sub) ~= Sub then h.raise("sync.next: expected a subscription from sync.subscribe") end
  return js.next(sub.id, timeout)
end
return M
`;

export function createSyncModule(ctx: LuaModuleContext): LuaModuleInstance {
  const call = (fn: string, method: string, args: unknown[]) =>
    ctx.rpc(method, args).catch((err: Error) => {
      throw new Error(err.message.startsWith('sync.') ? err.message : `sync.${fn}: ${err.message}`);
    });
  const name = (v: unknown, fn: string): string => {
    if (typeof v !== 'string' || v === '') throw new Error(`sync.${fn}: expected a name (string), got ${v === null || v === undefined ? 'nil' : typeof v}`);
    return v;
  };
  const count = (v: unknown, fn: string): number => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw new Error(`sync.${fn}: count must be a positive integer, got ${String(v)}`);
    return v;
  };
  const timeout = (v: unknown, fn: string): number | undefined => (v === undefined || v === null ? undefined : luaDurationMs(v, `sync.${fn}`));
  return {
    shim: SYNC_SHIM,
    exports: {
      barrier: (n: unknown, c: unknown, t: unknown) => call('barrier', 'sync.barrier', [name(n, 'barrier'), count(c, 'barrier'), timeout(t, 'barrier')]).then(() => undefined),
      signal: (n: unknown) => call('signal', 'sync.signal', [name(n, 'signal')]),
      wait: (n: unknown, c: unknown, t: unknown) => call('wait', 'sync.wait', [name(n, 'wait'), count(c, 'wait'), timeout(t, 'wait')]),
      publish: (topic: unknown, value: unknown) => call('publish', 'sync.publish', [name(topic, 'publish'), fromLua(value)]),
      subscribe: (topic: unknown) => call('subscribe', 'sync.subscribe', [name(topic, 'subscribe')]),
      next: (id: unknown, t: unknown) => call('next', 'sync.next', [id, timeout(t, 'next')]),
    },
  };
}
