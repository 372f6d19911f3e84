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
