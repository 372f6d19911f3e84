import type { LuaModuleContext, LuaModuleInstance } from './module-types';
import { parseShapeCall, SHAPE_FUNCTIONS } from '../../shape/shape-calls';

/**
 * require("shape"): traffic shaping and faults. Arguments are checked here (a
 * bad call fails in the scenario with the call's usage, without a round trip);
 * the change itself is applied on the main thread, which owns the proxies
 * (`shape.apply` rpc with a ShapeCall). Each call returns once every proxy of
 * the service has the new shape, so the next request already sees it.
 */
export function createShapeModule(ctx: LuaModuleContext): LuaModuleInstance {
  const exports: Record<string, (...args: unknown[]) => unknown> = {};
  for (const fn of SHAPE_FUNCTIONS) {
    exports[fn] = (...raw: unknown[]) => {
      // wasmoon hands nil as null; trailing nils are absent optional arguments
      const args = raw.map((a) => (a === null ? undefined : a));
      while (args.length > 0 && args[args.length - 1] === undefined) args.pop();
      const call = parseShapeCall(fn, args);
      return ctx.rpc('shape.apply', [call]).then(
        () => undefined,
        (err: Error) => {
          throw new Error(err.message.startsWith('shape.') ? err.message : `shape.${fn}: ${err.message}`);
        },
      );
    };
  }
  return { exports };
}
