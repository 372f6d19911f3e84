/**
 * Messages between the CLI and one load worker pod through the API server:
 * no port-forward, no pod IP. Each worker has one object (a ConfigMap) with
 * a field per direction; a side writes only its own two fields (merge
 * patches of different keys never conflict) and reads the other's from a
 * watch.
 *
 *   <out>     the sender's window: the messages not acknowledged yet, oldest
 *             first, each with its sequence number, at most `maxBatchBytes`
 *   <out>Ack  the highest sequence number of the peer's messages delivered
 *
 * State, not events: a receiver delivers the messages past what it has
 * delivered, in order, whatever watch events it missed or saw twice (a
 * re-list after a broken watch is just another look at the state). A sender
 * drops what the peer acknowledged; what did not fit the window goes in a
 * later write. Writes are coalesced (`debounceMs`) and never overlap, and an
 * acknowledgement alone waits `ackDelayMs`, so a worker's metrics each second
 * cost about two writes.
 */

/** The channel object as a side sees it. */
export interface ChannelStore {
  /** merge-patches these keys of the object's data */
  write(fields: Record<string, string>): Promise<void>;
}

export type Direction = 'down' | 'up';

export interface ChannelOptions {
  /** the field this side writes: 'down' (coordinator to worker) or 'up' */
  side: Direction;
  maxBatchBytes?: number;
  debounceMs?: number;
  ackDelayMs?: number;
  /** a write failed (it is retried with the next one) */
  onWriteError?: (err: unknown) => void;
}

export const MAX_BATCH_BYTES = 256 * 1024;

/** JSON with the values structured clone keeps and JSON loses: undefined, NaN/±Infinity, -0, Map, Set, Date, bytes, bigint. */
const TAG = '$topas';

export function encodeValue(v: unknown): string {
  return JSON.stringify(tag(v));
}

export function decodeValue(text: string): unknown {
  return untag(JSON.parse(text));
}

function tag(v: unknown): unknown {
  if (v === undefined) return { [TAG]: 'u' };
  if (typeof v === 'number') {
    if (Number.isNaN(v) || !Number.isFinite(v) || Object.is(v, -0)) return { [TAG]: 'n', v: String(v === 0 ? '-0' : v) };
    return v;
  }
  if (typeof v === 'bigint') return { [TAG]: 'big', v: v.toString() };
  if (v === null || typeof v !== 'object') return v;
  if (Array.isArray(v)) return v.map(tag);
  if (v instanceof Map) return { [TAG]: 'map', v: [...v].map(([k, x]) => [tag(k), tag(x)]) };
  if (v instanceof Set) return { [TAG]: 'set', v: [...v].map(tag) };
  if (v instanceof Date) return { [TAG]: 'date', v: v.getTime() };
  if (ArrayBuffer.isView(v)) return { [TAG]: 'bytes', v: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64') };
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) out[k] = tag(x);
  // a plain object that happens to have the tag's key is wrapped, so it reads back as itself
  return TAG in out ? { [TAG]: 'obj', v: out } : out;
}

function untag(v: unknown): unknown {
  if (v === null || typeof v !== 'object') return v;
  if (Array.isArray(v)) return v.map(untag);
  const o = v as Record<string, unknown>;
  if (TAG in o) {
    switch (o[TAG]) {
      case 'u':
        return undefined;
      case 'n':
        return o.v === '-0' ? -0 : Number(o.v);
      case 'big':
        return BigInt(o.v as string);
      case 'map':
        return new Map((o.v as Array<[unknown, unknown]>).map(([k, x]) => [untag(k), untag(x)]));
      case 'set':
        return new Set((o.v as unknown[]).map(untag));
      case 'date':
        return new Date(o.v as number);
      case 'bytes':
        return new Uint8Array(Buffer.from(o.v as string, 'base64'));
      case 'obj': {
        const out: Record<string, unknown> = {};
        for (const [k, x] of Object.entries(o.v as Record<string, unknown>)) out[k] = untag(x);
        return out;
      }
    }
  }
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(o)) out[k] = untag(x);
  return out;
}

interface Window {
  /** [seq, encoded message] */
  m: Array<[number, string]>;
}

/** One side of a channel: `send` queues, `receive` is fed the object's data from a watch, `deliver` gets the peer's messages in order, once. */
export class ChannelEndpoint<In, Out> {
  private readonly outKey: Direction;
  private readonly inKey: Direction;
  private nextSeq = 1;
  /** sent, not acknowledged yet */
  private outbox: Array<[number, string]> = [];
  private delivered = 0;
  private ackWritten = 0;
  private timer?: NodeJS.Timeout;
  private writing?: Promise<void>;
  private again = false;
  private closed = false;
  private readonly maxBatchBytes: number;
  /** messages of ours the peer confirmed, for flush() */
  private acked = 0;
  private ackWaiters: Array<() => void> = [];
  /** writes made so far (for the figures) */
  writes = 0;

  constructor(
    private readonly store: ChannelStore,
    private readonly deliver: (msg: In) => void,
    private readonly opts: ChannelOptions,
  ) {
    this.outKey = opts.side;
    this.inKey = opts.side === 'down' ? 'up' : 'down';
    this.maxBatchBytes = opts.maxBatchBytes ?? MAX_BATCH_BYTES;
  }

  send(msg: Out): void {
    if (this.closed) return;
    this.outbox.push([this.nextSeq++, encodeValue(msg)]);
    this.schedule(this.opts.debounceMs ?? 10);
  }

  /** The object's data as a watch (or a read) saw it. */
  receive(data: Record<string, string> | undefined): void {
    if (!data) return;
    const ack = Number(data[`${this.outKey}Ack`] ?? 0);
    if (ack > this.acked) {
      this.acked = ack;
      while (this.outbox.length && this.outbox[0][0] <= ack) this.outbox.shift();
      if (this.acked >= this.nextSeq - 1) for (const w of this.ackWaiters.splice(0)) w();
      // what did not fit the last window goes now
      if (this.outbox.length) this.schedule(0);
    }
    const raw = data[this.inKey];
    if (!raw) return;
    let win: Window;
    try {
      win = JSON.parse(raw) as Window;
    } catch {
      return;
    }
    let got = false;
    for (const [seq, text] of win.m ?? []) {
      if (seq !== this.delivered + 1) continue;
      this.delivered = seq;
      got = true;
      this.deliver(decodeValue(text) as In);
    }
    if (got) this.schedule(this.opts.ackDelayMs ?? 100);
  }

  /** The peer's messages delivered so far (the last sequence number). */
  get deliveredSeq(): number {
    return this.delivered;
  }

  /** Resolves once everything sent so far is acknowledged (or `timeoutMs` passed: false). */
  async flush(timeoutMs: number): Promise<boolean> {
    if (this.acked >= this.nextSeq - 1) return true;
    this.schedule(0);
    return new Promise<boolean>((resolve) => {
      const t = setTimeout(() => resolve(false), timeoutMs);
      this.ackWaiters.push(() => {
        clearTimeout(t);
        resolve(true);
      });
    });
  }

  /** No more writes; what is queued stays unsent. */
  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    for (const w of this.ackWaiters.splice(0)) w();
  }

  private schedule(delayMs: number): void {
    if (this.closed) return;
    if (this.writing) {
      this.again = true;
      return;
    }
    if (this.timer) {
      if (delayMs > 0) return;
      clearTimeout(this.timer);
    }
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.write();
    }, delayMs);
  }

  /** The window that fits: oldest first, at least one message however big. */
  private window(): string {
    const m: Array<[number, string]> = [];
    let bytes = 8;
    for (const e of this.outbox) {
      const size = e[1].length + 16;
      if (m.length > 0 && bytes + size > this.maxBatchBytes) break;
      m.push(e);
      bytes += size;
    }
    return JSON.stringify({ m } satisfies Window);
  }

  private async write(): Promise<void> {
    if (this.closed) return;
    const fields: Record<string, string> = {};
    const ack = this.delivered;
    if (ack !== this.ackWritten) fields[`${this.inKey}Ack`] = String(ack);
    if (this.outbox.length) fields[this.outKey] = this.window();
    if (Object.keys(fields).length === 0) return;
    let failed = false;
    const done = (async () => {
      try {
        await this.store.write(fields);
        this.writes++;
        this.ackWritten = ack;
      } catch (err) {
        failed = true;
        this.opts.onWriteError?.(err);
      }
    })();
    this.writing = done;
    await done;
    this.writing = undefined;
    const again = this.again;
    this.again = false;
    // a failed write is retried after a pause, not in a busy loop; messages queued meanwhile go at once
    if (failed) this.schedule(RETRY_MS);
    else if (again && (this.outbox.length > 0 || this.ackWritten !== this.delivered)) this.schedule(this.opts.debounceMs ?? 10);
  }
}

const RETRY_MS = 500;
