import type { LuaModuleContext, LuaModuleInstance } from './module-types';
import { fromLua, luaDurationMs, luaOptions } from '../lua-values';
import { LIMITS, envSizeProblems } from '../../util/limits';

/** The spec's bounds hold for changes made while running too. */
function checkReplicas(fn: string, n: unknown): void {
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > LIMITS.replicas) throw new Error(`sut.${fn}: replicas must be an integer 0-${LIMITS.replicas}, got ${String(n)}`);
}

/**
 * require("sut"): every call is served by the main thread (which owns the
 * backend) through an `rpc-call`; method names and argument lists are those
 * of the `Sut` interface, durations in ms.
 */
export function createSutModule(ctx: LuaModuleContext): LuaModuleInstance {
  const call = (luaName: string, method: string, args: unknown[]) => {
    // drop trailing nils: optional arguments of the Sut methods
    while (args.length > 0 && args[args.length - 1] === undefined) args.pop();
    return ctx.rpc(method, args).catch((err: Error) => {
      throw new Error(`sut.${luaName}: ${err.message}`);
    });
  };
  const name = (v: unknown, fn: string): string => {
    if (typeof v !== 'string' || v === '') throw new Error(`sut.${fn}: expected a service name, got ${v === null || v === undefined ? 'nil' : typeof v}`);
    return v;
  };
  return {
    exports: {
      services: () => call('services', 'sut.services', []),
      endpoint: (svc: unknown, port: unknown) => call('endpoint', 'sut.endpoint', [name(svc, 'endpoint'), fromLua<string>(port)]),
      apply_service: (svc: unknown, change: unknown) => {
        const c = luaOptions(change, 'sut.apply_service');
        const out: Record<string, unknown> = {};
        for (const k of ['image', 'version', 'replicas', 'env'] as const) if (c[k] !== undefined && c[k] !== null) out[k] = k === 'version' ? String(c[k]) : c[k];
        if (out.replicas !== undefined) checkReplicas('apply_service', out.replicas);
        if (out.env && typeof out.env === 'object') {
          const env = Object.fromEntries(Object.entries(out.env as Record<string, unknown>).map(([k, v]) => [k, String(v)]));
          const p = envSizeProblems(env)[0];
          if (p) throw new Error(`sut.apply_service: env${p.name ? `.${p.name}` : ''}: ${p.message}`);
        }
        return call('apply_service', 'sut.applyService', [name(svc, 'apply_service'), out]);
      },
      wait_ready: (svc: unknown, timeout: unknown) => call('wait_ready', 'sut.waitReady', [name(svc, 'wait_ready'), luaDurationMs(timeout, 'sut.wait_ready')]),
      scale: (svc: unknown, n: unknown) => {
        checkReplicas('scale', n);
        return call('scale', 'sut.scale', [name(svc, 'scale'), n]);
      },
      stop: (svc: unknown) => call('stop', 'sut.stop', [name(svc, 'stop')]),
      start: (svc: unknown) => call('start', 'sut.start', [name(svc, 'start')]),
      restart: (svc: unknown) => call('restart', 'sut.restart', [name(svc, 'restart')]),
      kill: (svc: unknown, opts: unknown) => {
        const o = luaOptions(opts, 'sut.kill');
        const out: Record<string, unknown> = {};
        if (o.signal !== undefined) out.signal = String(o.signal);
        if (o.replica !== undefined) out.replica = o.replica;
        return call('kill', 'sut.kill', [name(svc, 'kill'), Object.keys(out).length > 0 ? out : undefined]);
      },
      logs: (svc: unknown, opts: unknown) => {
        const o = luaOptions(opts, 'sut.logs');
        return call('logs', 'sut.logs', [name(svc, 'logs'), o.tail !== undefined ? { tail: o.tail } : undefined]);
      },
      exec: (svc: unknown, argv: unknown) => {
        if (!Array.isArray(argv) || argv.length === 0) throw new Error('sut.exec: argv must be a non-empty list of strings');
        return call('exec', 'sut.exec', [name(svc, 'exec'), argv.map(String)]);
      },
    },
  };
}
