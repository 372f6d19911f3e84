import { TopasError } from '../errors';
import { callSync, type SyncGroup } from '../sync/sync-group';
import type { ShapeController } from '../shape/shape-controller';
import type { ShapeCall } from '../shape/shape-calls';

export type RpcHandler = (runId: string, method: string, args: unknown[]) => Promise<unknown>;

/**
 * Module calls that scenarios make to the main thread, routed by prefix:
 * `sut.*` to the backend, `sync.*` to the scenario's sync broker, `shape.*`
 * to the SUT's shape controller.
 */
export function routeRpc(routes: {
  sut: RpcHandler;
  sync: (runId: string) => { broker: SyncGroup; instance: string } | undefined;
  /** `shape.*`: the run's shaping proxies (absent without a SUT) */
  shape?: () => ShapeController | undefined;
}): RpcHandler {
  return async (runId, method, args) => {
    if (method.startsWith('shape.')) {
      const controller = routes.shape?.();
      if (!controller) {
        throw new TopasError('SUT_NOT_UP', `${method}: there is no system under test to shape`, {
          hint: 'shaping needs an app spec (topas.yaml) on a backend with shaping proxies (local, docker, kubernetes)',
        });
      }
      if (method !== 'shape.apply') throw new TopasError('INTERNAL', `unknown shape call ${method}`);
      controller.applyCall(args[0] as ShapeCall);
      await controller.settled();
      return undefined;
    }
    if (method.startsWith('sync.')) {
      const entry = routes.sync(runId);
      if (!entry) throw new TopasError('INTERNAL', `${method}: this scenario has no sync group`);
      return callSync(entry.broker, entry.instance, method, args);
    }
    return routes.sut(runId, method, args);
  };
}
