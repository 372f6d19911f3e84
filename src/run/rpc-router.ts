import { TopasError } from '../errors';
import type { SyncBroker } from '../sync/sync-broker';
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
  sync: (runId: string) => { broker: SyncBroker; instance: string } | undefined;
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
      const { broker, instance } = entry;
      const ms = (v: unknown) => (typeof v === 'number' ? v : undefined);
      switch (method) {
        case 'sync.barrier':
          return broker.barrier(instance, String(args[0]), Number(args[1]), ms(args[2]));
        case 'sync.signal':
          return broker.signal(instance, String(args[0]));
        case 'sync.wait':
          return broker.waitSignal(instance, String(args[0]), Number(args[1]), ms(args[2]));
        case 'sync.publish':
          return broker.publish(instance, String(args[0]), args[1]);
        case 'sync.subscribe':
          return broker.subscribe(instance, String(args[0]));
        case 'sync.next':
          return broker.next(instance, Number(args[0]), ms(args[1]));
        default:
          throw new TopasError('INTERNAL', `unknown sync call ${method}`);
      }
    }
    return routes.sut(runId, method, args);
  };
}
