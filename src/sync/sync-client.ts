import WebSocket from 'ws';
import { TopasError, deserializeError } from '../errors';
import type { SyncGroup } from './sync-group';
import { keepAlive, SYNC_MAX_PAYLOAD_BYTES, SYNC_TOKEN_HEADER, type SyncEndedEvent, type SyncRequest, type SyncServerMessage } from './sync-protocol';

/** how long a client keeps trying to reach a sync server that is not up yet (a pod starting next to the runners) */
const DEFAULT_CONNECT_TIMEOUT_MS = 60_000;
const RETRY_MS = 250;

type Pending = { resolve: (v: unknown) => void; reject: (e: Error) => void };
type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

export interface SyncClientOptions {
  token?: string;
  connectTimeoutMs?: number;
}

/**
 * One WebSocket to a sync server (src/sync/sync-server.ts): requests get ids
 * and settle with their reply; a connection that drops fails every pending
 * request (a wait never hangs on a server that is gone).
 */
export class SyncClient {
  private readonly pending = new Map<number, Pending>();
  private readonly listeners = new Set<(ev: SyncEndedEvent) => void>();
  private nextId = 1;
  private closedBecause?: string;

  private constructor(
    private readonly ws: WebSocket,
    readonly url: string,
  ) {
    ws.on('message', (data) => this.onMessage(String(data)));
    // a sync server gone off the network (its pod deleted) sends no FIN: pending waits fail instead of hanging
    const stopKeepAlive = keepAlive(ws);
    ws.on('close', () => stopKeepAlive());
    ws.on('close', (code, reason) => this.failAll(`the connection to the sync server ${url} closed (${code}${reason.length ? ` ${String(reason)}` : ''})`));
    ws.on('error', () => undefined);
  }

  /** Connects, retrying while the server is not reachable yet (up to connectTimeoutMs). */
  static async connect(url: string, opts: SyncClientOptions = {}): Promise<SyncClient> {
    const deadline = Date.now() + (opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS);
    let last = '';
    for (;;) {
      try {
        const ws = await open(url, opts.token, Math.max(1000, deadline - Date.now()));
        return new SyncClient(ws, url);
      } catch (err) {
        last = (err as Error).message;
        // a refused token will not get better
        if (/401|403/.test(last) || Date.now() + RETRY_MS > deadline) break;
        await new Promise((r) => setTimeout(r, RETRY_MS));
      }
    }
    throw new TopasError('BACKEND_UNAVAILABLE', `sync: cannot reach the sync server at ${url} within ${Math.round((opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS) / 1000)} s: ${last}`);
  }

  request(req: DistributiveOmit<SyncRequest, 'id'>): Promise<unknown> {
    if (this.closedBecause) return Promise.reject(new TopasError('INTERRUPTED', `sync: ${this.closedBecause}`));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.ws.send(JSON.stringify({ ...req, id }), (err) => {
        if (err) this.settle(id, () => reject(new TopasError('INTERRUPTED', `sync: ${err.message}`)));
      });
    });
  }

  /** a `sync.*` call of a scenario, as `callSync` takes it */
  call(group: string, instance: string, method: string, args: unknown[]): Promise<unknown> {
    // JSON has no undefined: an absent timeout travels as null and the broker's default applies
    return this.request({ op: 'call', group, instance, method, args: args.map((a) => (a === undefined ? null : a)) });
  }

  onEnded(listener: (ev: SyncEndedEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  close(): void {
    this.failAll('the client closed');
    this.ws.close();
  }

  private onMessage(text: string): void {
    let msg: SyncServerMessage;
    try {
      msg = JSON.parse(text) as SyncServerMessage;
    } catch {
      return;
    }
    if ('ev' in msg) {
      for (const l of this.listeners) l(msg);
      return;
    }
    const reply = msg;
    this.settle(reply.id, (p) => (reply.ok ? p.resolve(reply.value ?? undefined) : p.reject(deserializeError(reply.error))));
  }

  private settle(id: number, fn: (p: Pending) => void): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    fn(p);
  }

  private failAll(reason: string): void {
    if (!this.closedBecause) this.closedBecause = reason;
    const err = new TopasError('INTERRUPTED', `sync: ${reason}`);
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }
}

function open(url: string, token: string | undefined, timeoutMs: number): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { maxPayload: SYNC_MAX_PAYLOAD_BYTES, handshakeTimeout: timeoutMs, headers: token ? { [SYNC_TOKEN_HEADER]: token } : {}, perMessageDeflate: false });
    ws.once('open', () => {
      ws.removeAllListeners('error');
      resolve(ws);
    });
    ws.once('unexpected-response', (_req, res) => {
      ws.terminate();
      reject(new Error(`the server answered ${res.statusCode}`));
    });
    ws.once('error', (err) => reject(err));
  });
}

/**
 * A playbook's SyncGroup in a sync server: what a runner (the coordinator of
 * some of the playbook's instances) uses. It joins with every instance and
 * the ones it runs; `onFailure` hears of instances of other runners that
 * failed (so this runner stops its own, as one coordinator would).
 */
export class RemoteSyncGroup implements SyncGroup {
  private readonly sending = new Set<Promise<unknown>>();

  private constructor(
    private readonly client: SyncClient,
    readonly name: string,
    private readonly owns: Set<string>,
  ) {}

  static async join(o: { url: string; token?: string; group: string; instances: string[]; owns: string[]; defaultTimeoutMs: number; onFailure?: (instance: string, reason: string) => void; connectTimeoutMs?: number }): Promise<RemoteSyncGroup> {
    const client = await SyncClient.connect(o.url, { token: o.token, connectTimeoutMs: o.connectTimeoutMs });
    const g = new RemoteSyncGroup(client, o.group, new Set(o.owns));
    client.onEnded((ev) => {
      if (ev.group === o.group && ev.failed && !g.owns.has(ev.instance)) o.onFailure?.(ev.instance, ev.reason);
    });
    try {
      await client.request({ op: 'join', group: o.group, instances: o.instances, owns: o.owns, defaultTimeoutMs: o.defaultTimeoutMs, watch: true });
    } catch (err) {
      client.close();
      throw err;
    }
    return g;
  }

  private call<T>(instance: string, method: string, args: unknown[]): Promise<T> {
    return this.client.call(this.name, instance, method, args) as Promise<T>;
  }

  barrier(instance: string, name: string, count: number, timeoutMs?: number): Promise<void> {
    return this.call<void>(instance, 'sync.barrier', [name, count, timeoutMs]).then(() => undefined);
  }
  signal(instance: string, name: string): Promise<number> {
    return this.call(instance, 'sync.signal', [name]);
  }
  waitSignal(instance: string, name: string, count: number, timeoutMs?: number): Promise<number> {
    return this.call(instance, 'sync.wait', [name, count, timeoutMs]);
  }
  publish(instance: string, topic: string, value: unknown): Promise<number> {
    return this.call(instance, 'sync.publish', [topic, value]);
  }
  subscribe(instance: string, topic: string): Promise<number> {
    return this.call(instance, 'sync.subscribe', [topic]);
  }
  next(instance: string, subscription: number, timeoutMs?: number): Promise<unknown> {
    return this.call(instance, 'sync.next', [subscription, timeoutMs]);
  }

  /** `reason` starting with "it finished" is a pass; anything else fails the instance for the others */
  instanceEnded(instance: string, reason: string): void {
    const sent = this.client.request({ op: 'ended', group: this.name, instance, reason, failed: !/^it finished/.test(reason) }).catch(() => undefined);
    this.sending.add(sent);
    void sent.finally(() => this.sending.delete(sent));
  }

  /** Leaves the group once the last `ended` went through; the server keeps the group for the other runners. */
  close(_reason: string): void {
    void Promise.all([...this.sending]).then(() => this.client.close());
  }
}

/** Clients of a worker, one per sync server URL, made on first use. */
export class SyncClients {
  private readonly clients = new Map<string, Promise<SyncClient>>();

  call(to: { url: string; token?: string; group: string }, instance: string, method: string, args: unknown[]): Promise<unknown> {
    const { url, token, group } = to;
    const key = `${url}\n${token ?? ''}`;
    let c = this.clients.get(key);
    if (!c) {
      c = SyncClient.connect(url, { token });
      // a failed connect is not cached: the next call tries again
      c.catch(() => this.clients.delete(key));
      this.clients.set(key, c);
    }
    return c.then((client) => client.call(group, instance, method, args));
  }

  close(): void {
    for (const c of this.clients.values()) void c.then((client) => client.close(), () => undefined);
    this.clients.clear();
  }
}
