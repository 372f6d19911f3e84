import { TopasError } from '../errors';

/**
 * One playbook's coordination (barriers, signals, topics) as its instances
 * see it. Two implementations: the in-process SyncBroker (the coordinator's
 * main thread; workers reach it by rpc) and RemoteSyncGroup (a SyncBroker in
 * a sync server, reached over a WebSocket: src/sync/sync-client.ts), so
 * instances spread over processes or pods meet at the same barriers.
 */
export interface SyncGroup {
  barrier(instance: string, name: string, count: number, timeoutMs?: number): Promise<void>;
  signal(instance: string, name: string): number | Promise<number>;
  waitSignal(instance: string, name: string, count: number, timeoutMs?: number): Promise<number>;
  publish(instance: string, topic: string, value: unknown): number | Promise<number>;
  subscribe(instance: string, topic: string): number | Promise<number>;
  next(instance: string, subscription: number, timeoutMs?: number): Promise<unknown>;
  /** an instance ended (passed, or failed: `reason` says how); barriers it can no longer fill fail now */
  instanceEnded(instance: string, reason: string): void;
  /** fails every pending wait of this side (the run is stopping, or the playbook ended) */
  close(reason: string): void;
}

/** The `sync.*` module calls, as scenarios make them (src/lua/modules/sync.ts), served by a group. */
export async function callSync(group: SyncGroup, instance: string, method: string, args: unknown[]): Promise<unknown> {
  const ms = (v: unknown) => (typeof v === 'number' ? v : undefined);
  switch (method) {
    case 'sync.barrier':
      return group.barrier(instance, String(args[0]), Number(args[1]), ms(args[2]));
    case 'sync.signal':
      return group.signal(instance, String(args[0]));
    case 'sync.wait':
      return group.waitSignal(instance, String(args[0]), Number(args[1]), ms(args[2]));
    case 'sync.publish':
      return group.publish(instance, String(args[0]), args[1]);
    case 'sync.subscribe':
      return group.subscribe(instance, String(args[0]));
    case 'sync.next':
      return group.next(instance, Number(args[0]), ms(args[1]));
    default:
      throw new TopasError('INTERNAL', `unknown sync call ${method}`);
  }
}
