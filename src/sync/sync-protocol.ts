import type { SerializedError } from '../errors';

/**
 * The sync server's protocol: JSON text frames over one WebSocket
 * (src/sync/sync-server.ts, src/sync/sync-client.ts). Every request has an
 * `id` and gets exactly one reply with that id; `ended` events go to the
 * connections that joined a group with `watch`.
 */
export type SyncRequest =
  /**
   * Makes the group on first use. `instances`: every instance of the playbook
   * (all runners compute the same list); `owns`: the instances this
   * connection's runner runs: if the connection drops, they count as ended
   * (failed), so barriers that need them fail at once instead of timing out.
   */
  | { id: number; op: 'join'; group: string; instances: string[]; defaultTimeoutMs: number; owns?: string[]; watch?: boolean }
  /** one `sync.*` call of a scenario (src/sync/sync-group.ts callSync) */
  | { id: number; op: 'call'; group: string; instance: string; method: string; args: unknown[] }
  | { id: number; op: 'ended'; group: string; instance: string; reason: string; failed: boolean };

export type SyncReply = { id: number; ok: true; value?: unknown } | { id: number; ok: false; error: SerializedError };

export interface SyncEndedEvent {
  ev: 'ended';
  group: string;
  instance: string;
  reason: string;
  failed: boolean;
}

export type SyncServerMessage = SyncReply | SyncEndedEvent;

/** the server's port in a cluster (a Service's port equals its targetPort) */
export const SYNC_DEFAULT_PORT = 7070;
/** a frame larger than this closes the connection (a published value is a Lua table, not a file) */
export const SYNC_MAX_PAYLOAD_BYTES = 8 * 1024 * 1024;
/** the header (or `?token=`) a sync server with a token requires */
export const SYNC_TOKEN_HEADER = 'x-topas-sync-token';

/**
 * Both ends ping this often and drop a peer that did not answer the last
 * ping: a runner pod deleted off the network sends no FIN, and its instances
 * must count as ended (barriers that need them fail) instead of hanging.
 */
export const SYNC_HEARTBEAT_MS = 3000;

/** Pings `ws` every `intervalMs`; terminates it when a ping went unanswered. Returns the stop function. */
export function keepAlive(ws: { ping(): void; terminate(): void; on(ev: 'pong', fn: () => void): unknown }, intervalMs = SYNC_HEARTBEAT_MS): () => void {
  let answered = true;
  ws.on('pong', () => (answered = true));
  const timer = setInterval(() => {
    if (!answered) {
      clearInterval(timer);
      ws.terminate();
      return;
    }
    answered = false;
    try {
      ws.ping();
    } catch {
      // closing: the close event follows
    }
  }, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
