import type { LeanResponse } from './vu-http';
import { Conn, RawHttpError, St, type Origin, type Req } from './vu-raw-http-conn';

export { RawHttpError };

/**
 * A minimal HTTP/1.1 keep-alive client for the load hot path: plain http://
 * origins, string bodies, one request in flight per socket. It sends what
 * undici's dispatcher would send (host, connection: keep-alive, the caller's
 * headers, content-length) and parses the response itself: status line,
 * headers, Content-Length, chunked, read-until-close, HEAD/1xx/204/304.
 *
 * Why: under load undici's machinery (request objects, llhttp in wasm, the
 * socket's stream plumbing) costs more than the request itself. Sockets read
 * into one reusable buffer (`onread`), so a response costs no stream events.
 *
 * `rawRequest` returns undefined for what it does not handle (https, special
 * headers like host/expect/upgrade, big or unexpected bodies): the caller then
 * takes the undici path. Errors carry undici's codes where net.ts looks at them
 * (UND_ERR_HEADERS_TIMEOUT, UND_ERR_BODY_TIMEOUT, UND_ERR_SOCKET).
 */

export interface RawRequest {
  /** `http://host:port` */
  origin: string;
  /** path and query */
  path: string;
  method: string;
  /** lower-cased names */
  headers: Record<string, string>;
  body?: string;
  signal: AbortSignal;
  /** headers timeout and body idle timeout, ms */
  timeoutMs: number;
}

const CONNECT_TIMEOUT_MS = 10_000;
const MAX_BODY_BYTES = 1024 * 1024;
const MAX_CACHED_HEADS = 1000;

const TOKEN_RE = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// undici rejects these characters in header values
const BAD_VALUE_RE = /[^\t\x20-\x7e\x80-\xff]/;
const BAD_PATH_RE = /[^\u0021-\u00ff]/;
// headers undici treats specially (or rejects): leave them to undici
const SPECIAL_HEADERS = new Set(['host', 'connection', 'content-length', 'transfer-encoding', 'keep-alive', 'upgrade', 'expect', 'te', 'trailer', 'proxy-connection']);
const SIMPLE_METHODS = new Set(['GET', 'HEAD', 'DELETE', 'OPTIONS']);
const PAYLOAD_METHODS = new Set(['POST', 'PUT', 'PATCH']);

export class RawHttpClient {
  /** every socket reads into this; whatever outlives a read is copied */
  readonly readBuffer = Buffer.allocUnsafe(64 * 1024);
  private readonly origins = new Map<string, Origin>();
  /** origin -> path -> method -> the request's bytes, for requests without headers or body */
  private readonly heads = new Map<string, Map<string, Map<string, Buffer>>>();
  private cachedHeads = 0;
  private readonly active = new Set<Req>();
  private outbox: Req[] = [];
  private readonly signals = new WeakSet<AbortSignal>();
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Infinity;

  /**
   * Sends the request and returns true, or returns false when it is not for
   * this client. Exactly one of the callbacks is called, never synchronously.
   */
  send(q: RawRequest, onOk: (r: LeanResponse) => void, onErr: (e: Error) => void): boolean {
    const origin = this.originOf(q.origin);
    if (!origin) return false;
    const head = this.headOf(q, origin);
    if (!head) return false;
    const signal = q.signal;
    if (!this.signals.has(signal)) {
      this.signals.add(signal);
      signal.addEventListener('abort', () => this.abortAll(signal), { once: true });
    }
    if (signal.aborted) {
      queueMicrotask(() => onErr(signal.reason as Error));
      return true;
    }
    this.start({ origin, method: q.method, head, signal, timeoutMs: q.timeoutMs, deadline: 0, phase: 0, retried: false, onOk, onErr, conn: undefined });
    return true;
  }

  /** `send` as a promise, or undefined when the request is not for this client. */
  request(q: RawRequest): Promise<LeanResponse> | undefined {
    let settle: { ok: (r: LeanResponse) => void; err: (e: Error) => void } | undefined;
    const p = new Promise<LeanResponse>((ok, err) => (settle = { ok, err }));
    return this.send(q, (r) => settle!.ok(r), (e) => settle!.err(e)) ? p : undefined;
  }

  /** Closes every idle connection. */
  close(): void {
    for (const o of this.origins.values()) for (const c of o.idle.splice(0)) c.socket.destroy();
  }

  start(r: Req): void {
    const o = r.origin;
    const now = performance.now();
    let conn: Conn | undefined;
    while ((conn = o.idle.pop())) {
      if (!conn.closed && conn.idleUntil > now) break;
      conn.socket.destroy();
    }
    this.active.add(r);
    if (conn) {
      conn.socket.ref();
      conn.req = r;
      conn.st = St.Head;
      r.conn = conn;
      this.sent(r, now);
      return;
    }
    conn = new Conn(this, o);
    conn.req = r;
    conn.st = St.Head;
    r.conn = conn;
    r.phase = 0;
    this.arm(r, now + CONNECT_TIMEOUT_MS);
  }

  /** The connection is up: write the request, the headers timeout starts. */
  sent(r: Req, now = performance.now()): void {
    r.phase = 1;
    this.outbox.push(r);
    if (this.outbox.length === 1) setImmediate(this.flush);
    this.arm(r, now + r.timeoutMs);
  }

  /**
   * Writes every request queued in this event-loop turn back to back. Under
   * load, many responses arrive in one poll phase and each starts the next
   * request; writing them together means the server wakes once for the batch
   * rather than once per request (on loopback a write does the receiver's
   * TCP work and wake-up inline, and that dominated the client's CPU).
   */
  private readonly flush = (): void => {
    const batch = this.outbox;
    this.outbox = [];
    for (const r of batch) {
      const c = r.conn;
      if (c && c.req === r && !c.closed) c.socket.write(r.head);
    }
  };

  done(r: Req): void {
    this.active.delete(r);
  }

  private arm(r: Req, deadline: number): void {
    r.deadline = deadline;
    if (deadline >= this.timerAt) return;
    if (this.timer) clearTimeout(this.timer);
    this.timerAt = deadline;
    this.timer = setTimeout(this.sweep, Math.max(1, Math.ceil(deadline - performance.now())));
    this.timer.unref();
  }

  private readonly sweep = (): void => {
    this.timer = undefined;
    this.timerAt = Infinity;
    const now = performance.now();
    let next = Infinity;
    for (const r of this.active) {
      if (r.deadline <= now) {
        const c = r.conn!;
        const err =
          r.phase === 0
            ? new RawHttpError(`Connect Timeout Error (attempted address: ${r.origin.host}:${r.origin.port}, timeout: ${CONNECT_TIMEOUT_MS}ms)`, 'UND_ERR_CONNECT_TIMEOUT')
            : r.phase === 1
              ? new RawHttpError('Headers Timeout Error', 'UND_ERR_HEADERS_TIMEOUT')
              : new RawHttpError('Body Timeout Error', 'UND_ERR_BODY_TIMEOUT');
        c.fail(err);
      } else if (r.deadline < next) next = r.deadline;
    }
    if (next < Infinity) {
      this.timerAt = next;
      this.timer = setTimeout(this.sweep, Math.max(1, Math.ceil(next - now)));
      this.timer.unref();
    }
  };

  private abortAll(signal: AbortSignal): void {
    for (const r of this.active) if (r.signal === signal) r.conn!.fail(signal.reason as Error);
  }

  private originOf(raw: string): Origin | undefined {
    let o = this.origins.get(raw);
    if (o) return o;
    if (!raw.startsWith('http://')) return undefined;
    let u: URL;
    try {
      u = new URL(raw);
    } catch {
      return undefined;
    }
    if (u.protocol !== 'http:' || u.username || u.password) return undefined;
    const host = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname;
    o = { host, port: u.port ? Number(u.port) : 80, hostHeader: u.host, idle: [] };
    this.origins.set(raw, o);
    return o;
  }

  /** The request's bytes: cached for requests without headers or body. */
  private headOf(q: RawRequest, o: Origin): Buffer | undefined {
    const { method, path, headers, body } = q;
    let simple = body === undefined;
    for (const _ in headers) {
      simple = false;
      break;
    }
    // keyed by the very strings net passes (its URL cache hands out the same objects): no key is built per request
    let byPath: Map<string, Map<string, Buffer>> | undefined;
    let byMethod: Map<string, Buffer> | undefined;
    if (simple) {
      byPath = this.heads.get(q.origin);
      byMethod = byPath?.get(path);
      const hit = byMethod?.get(method);
      if (hit) return hit;
    }
    if (!TOKEN_RE.test(method) || BAD_PATH_RE.test(path) || path[0] !== '/') return undefined;
    if (body !== undefined ? !PAYLOAD_METHODS.has(method) || body.length > MAX_BODY_BYTES : !SIMPLE_METHODS.has(method) && !PAYLOAD_METHODS.has(method)) return undefined;
    let h = `${method} ${path} HTTP/1.1\r\nhost: ${o.hostHeader}\r\nconnection: keep-alive\r\n`;
    for (const k in headers) {
      const v = headers[k];
      if (SPECIAL_HEADERS.has(k) || !TOKEN_RE.test(k) || BAD_VALUE_RE.test(v)) return undefined;
      h += `${k}: ${v}\r\n`;
    }
    if (body === undefined) {
      h += PAYLOAD_METHODS.has(method) ? 'content-length: 0\r\n\r\n' : '\r\n';
      const buf = Buffer.from(h, 'latin1');
      if (simple) {
        if (this.cachedHeads >= MAX_CACHED_HEADS) {
          this.heads.clear();
          this.cachedHeads = 0;
          byPath = byMethod = undefined;
        }
        if (!byPath) this.heads.set(q.origin, (byPath = new Map()));
        if (!byMethod) byPath.set(path, (byMethod = new Map()));
        byMethod.set(method, buf);
        this.cachedHeads++;
      }
      return buf;
    }
    const bl = Buffer.byteLength(body);
    h += `content-length: ${bl}\r\n\r\n`;
    const buf = Buffer.allocUnsafe(h.length + bl);
    buf.write(h, 0, 'latin1');
    buf.write(body, h.length, 'utf8');
    return buf;
  }
}

let shared: RawHttpClient | undefined;
/** The thread's client (like undici's global dispatcher). */
export function rawHttpClient(): RawHttpClient {
  return (shared ??= new RawHttpClient());
}
