import * as net from 'node:net';
import type { LeanResponse } from './vu-http';
import type { RawHttpClient } from './vu-raw-http';

/**
 * One keep-alive connection of the raw HTTP client (vu-raw-http.ts) and the
 * response parser it runs on the bytes it reads: status line, headers,
 * Content-Length, chunked, read-until-close, HEAD/1xx/204/304.
 */

/** undici's default when the server sends no Keep-Alive hint */
const DEFAULT_KEEP_ALIVE_MS = 4_000;
/** undici's margin before a server's Keep-Alive timeout */
const KEEP_ALIVE_THRESHOLD_MS = 2_000;
const MAX_HEADER_BYTES = 16 * 1024;

const CRLFCRLF = Buffer.from('\r\n\r\n');
const IDEMPOTENT = new Set(['GET', 'HEAD', 'DELETE', 'OPTIONS', 'PUT']);

/** 1 to 15 ASCII digits */
function isDigits(s: string): boolean {
  const n = s.length;
  if (n === 0 || n > 15) return false;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c < 48 || c > 57) return false;
  }
  return true;
}

export class RawHttpError extends Error {
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
    this.name = 'RawHttpError';
  }
}

export const enum St {
  /** waiting for the status line and headers */
  Head,
  /** Content-Length body: `remaining` bytes left */
  Length,
  ChunkSize,
  ChunkData,
  /** the CRLF after a chunk's data: `remaining` bytes of it left */
  ChunkEnd,
  Trailers,
  /** body until the server closes */
  Eof,
  /** no request in flight */
  Idle,
}

export interface Req {
  origin: Origin;
  method: string;
  head: Buffer;
  signal: AbortSignal;
  timeoutMs: number;
  deadline: number;
  /** what the deadline guards: connect, headers or body */
  phase: 0 | 1 | 2;
  retried: boolean;
  onOk: (r: LeanResponse) => void;
  onErr: (e: Error) => void;
  conn: Conn | undefined;
}

export interface Origin {
  host: string;
  port: number;
  hostHeader: string;
  idle: Conn[];
}

export class Conn {
  readonly socket: net.Socket;
  req: Req | undefined;
  st: St = St.Idle;
  connected = false;
  /** served a response already: a failure before any byte of the next one may be a stale keep-alive */
  reused = false;
  gotBytes = false;
  idleUntil = 0;
  keepAliveMs = DEFAULT_KEEP_ALIVE_MS;
  keepAliveHint = '';
  closeAfter = false;
  closed = false;
  error: Error | undefined;
  // response in progress
  status = 0;
  rawHeaders = '';
  remaining = 0;
  pending: Buffer | undefined;
  line = '';
  body: Buffer[] | undefined;
  bodyStr: string | undefined;
  bodyBytes = 0;
  /** every byte read for the request in flight: status line, headers, framing, body */
  wireBytes = 0;

  constructor(
    readonly client: RawHttpClient,
    readonly origin: Origin,
  ) {
    this.socket = net.connect({
      host: origin.host,
      port: origin.port,
      noDelay: true,
      onread: { buffer: client.readBuffer, callback: (n: number, buf: Uint8Array) => this.onData(buf as Buffer, n) },
    });
    this.socket.on('connect', () => {
      this.connected = true;
      const r = this.req;
      if (r) this.client.sent(r);
    });
    this.socket.on('error', (err: Error) => {
      this.error ??= err;
    });
    this.socket.on('close', () => this.onClose());
  }

  onData(buf: Buffer, n: number): boolean {
    const r = this.req;
    if (!r) {
      // bytes with no request in flight: the connection is out of step
      this.socket.destroy();
      return false;
    }
    this.gotBytes = true;
    this.wireBytes += n;
    try {
      this.parse(buf, 0, n);
    } catch (err) {
      this.fail(err as Error);
    }
    return true;
  }

  private parse(buf: Buffer, pos: number, end: number): void {
    while (pos < end || this.st === St.Length || this.st === St.ChunkData) {
      switch (this.st) {
        case St.Head: {
          let data = buf;
          let from = pos;
          let to = end;
          if (this.pending) {
            data = Buffer.concat([this.pending, buf.subarray(pos, end)]);
            from = 0;
            to = data.length;
            this.pending = undefined;
          }
          const at = data.indexOf(CRLFCRLF, from);
          if (at < 0 || at >= to) {
            if (to - from > MAX_HEADER_BYTES) throw new RawHttpError('Headers Overflow Error', 'UND_ERR_HEADERS_OVERFLOW');
            this.pending = Buffer.from(data.subarray(from, to));
            return;
          }
          const info = this.head(data.toString('utf8', from, at));
          if (info) {
            // an interim response (100, 103): skip it
            if (data !== buf) {
              buf = data;
              end = to;
            }
            pos = at + 4;
            continue;
          }
          if (data !== buf) {
            buf = data;
            end = to;
          }
          pos = at + 4;
          if ((this.st as St) === St.Idle) {
            // no body: the response is complete
            if (pos < end) throw new RawHttpError('Response does not match the HTTP/1.1 protocol (unexpected data after response)', 'HPE_INVALID_CONSTANT');
            this.complete();
            return;
          }
          continue;
        }
        case St.Length: {
          const take = Math.min(this.remaining, end - pos);
          if (take > 0) this.addBody(buf, pos, pos + take, take === this.remaining && this.bodyBytes === 0);
          pos += take;
          this.remaining -= take;
          if (this.remaining > 0) {
            this.touch();
            return;
          }
          if (pos < end) throw new RawHttpError('Response does not match the HTTP/1.1 protocol (unexpected data after response)', 'HPE_INVALID_CONSTANT');
          this.complete();
          return;
        }
        case St.ChunkSize:
        case St.Trailers: {
          const nl = buf.indexOf(10, pos);
          if (nl < 0 || nl >= end) {
            this.line += buf.toString('latin1', pos, end);
            if (this.line.length > MAX_HEADER_BYTES) throw new RawHttpError('Response does not match the HTTP/1.1 protocol (chunk line too long)', 'HPE_INVALID_CHUNK_SIZE');
            this.touch();
            return;
          }
          let line = this.line + buf.toString('latin1', pos, nl);
          this.line = '';
          pos = nl + 1;
          if (line.endsWith('\r')) line = line.slice(0, -1);
          if (this.st === St.Trailers) {
            if (line === '') {
              if (pos < end) throw new RawHttpError('Response does not match the HTTP/1.1 protocol (unexpected data after response)', 'HPE_INVALID_CONSTANT');
              this.complete();
              return;
            }
            continue;
          }
          const semi = line.indexOf(';');
          const hex = (semi >= 0 ? line.slice(0, semi) : line).trim();
          if (!/^[0-9a-fA-F]{1,12}$/.test(hex)) throw new RawHttpError('Response does not match the HTTP/1.1 protocol (Invalid character in chunk size)', 'HPE_INVALID_CHUNK_SIZE');
          const size = parseInt(hex, 16);
          if (size === 0) this.st = St.Trailers;
          else {
            this.remaining = size;
            this.st = St.ChunkData;
          }
          continue;
        }
        case St.ChunkData: {
          if (pos >= end) {
            this.touch();
            return;
          }
          const take = Math.min(this.remaining, end - pos);
          this.addBody(buf, pos, pos + take, false);
          pos += take;
          this.remaining -= take;
          if (this.remaining === 0) {
            this.st = St.ChunkEnd;
            this.remaining = 2;
          }
          continue;
        }
        case St.ChunkEnd: {
          const c = buf[pos];
          if ((this.remaining === 2 && c === 13) || c === 10) {
            pos++;
            if (c === 10) {
              this.st = St.ChunkSize;
            } else this.remaining = 1;
            continue;
          }
          throw new RawHttpError('Response does not match the HTTP/1.1 protocol (Expected LF after chunk data)', 'HPE_STRICT');
        }
        case St.Eof:
          this.addBody(buf, pos, end, false);
          this.touch();
          return;
        case St.Idle:
          throw new RawHttpError('Response does not match the HTTP/1.1 protocol (unexpected data after response)', 'HPE_INVALID_CONSTANT');
      }
    }
    if (this.st !== St.Idle) this.touch();
  }

  /** Parses the status line and headers; returns true for an interim (1xx) response to skip. */
  private head(text: string): boolean {
    const r = this.req!;
    let eol = text.indexOf('\r\n');
    if (eol < 0) eol = text.length;
    // HTTP/1.x NNN reason
    if (!text.startsWith('HTTP/1.') || text.charCodeAt(8) !== 32) throw new RawHttpError('Response does not match the HTTP/1.1 protocol (Expected HTTP/)', 'HPE_INVALID_CONSTANT');
    const http10 = text.charCodeAt(7) === 48;
    const status = Number(text.slice(9, 12));
    if (!(status >= 100 && status <= 999) || (eol > 12 && text.charCodeAt(12) !== 32)) throw new RawHttpError('Response does not match the HTTP/1.1 protocol (Invalid status code)', 'HPE_INVALID_STATUS');
    let length = -1;
    let chunked = false;
    let te = false;
    let connection = '';
    let pos = eol + 2;
    const block = pos < text.length ? text.slice(pos) : '';
    // only the framing headers are looked at here; scripts parse the block when they read headers
    while (pos < text.length) {
      let next = text.indexOf('\r\n', pos);
      if (next < 0) next = text.length;
      const colon = text.indexOf(':', pos);
      if (colon < 0 || colon > next || colon === pos) throw new RawHttpError('Response does not match the HTTP/1.1 protocol (Invalid header token)', 'HPE_INVALID_HEADER_TOKEN');
      const c0 = text.charCodeAt(pos);
      if (c0 === 32 || c0 === 9) throw new RawHttpError('Response does not match the HTTP/1.1 protocol (Invalid header token)', 'HPE_INVALID_HEADER_TOKEN');
      const len = colon - pos;
      if (len === 14 || len === 17 || len === 10) {
        const name = text.slice(pos, colon).toLowerCase();
        const value = text.slice(colon + 1, next).trim();
        switch (name) {
          case 'content-length': {
            const n = isDigits(value) ? Number(value) : NaN;
            if (Number.isNaN(n) || (length >= 0 && length !== n)) throw new RawHttpError('Response does not match the HTTP/1.1 protocol (Invalid content-length)', 'HPE_INVALID_CONTENT_LENGTH');
            length = n;
            break;
          }
          case 'transfer-encoding':
            // the last coding decides, across repeated headers too
            te = true;
            chunked = /(^|,)\s*chunked\s*$/i.test(value);
            break;
          case 'connection':
            connection = connection ? `${connection}, ${value.toLowerCase()}` : value.toLowerCase();
            break;
          case 'keep-alive': {
            // servers send the same hint every time: parse it once
            if (value === this.keepAliveHint) break;
            this.keepAliveHint = value;
            const m = /timeout=(\d+)/i.exec(value);
            if (m) this.keepAliveMs = Math.max(0, Number(m[1]) * 1000 - KEEP_ALIVE_THRESHOLD_MS);
            break;
          }
        }
      }
      pos = next + 2;
    }
    if (status < 200) {
      if (status === 101) throw new RawHttpError('Response does not match the HTTP/1.1 protocol (unexpected upgrade)', 'HPE_INVALID_CONSTANT');
      return true;
    }
    if (te && length >= 0) throw new RawHttpError('Response does not match the HTTP/1.1 protocol (Content-Length can\'t be present with Transfer-Encoding)', 'HPE_UNEXPECTED_CONTENT_LENGTH');
    this.status = status;
    this.rawHeaders = block;
    this.closeAfter = connection === '' ? http10 : connection === 'keep-alive' ? false : http10 ? !/(^|,)\s*keep-alive\s*(,|$)/.test(connection) : /(^|,)\s*close\s*(,|$)/.test(connection);
    r.phase = 2;
    if (r.method === 'HEAD' || status === 204 || status === 304) this.st = St.Idle;
    else if (chunked) this.st = St.ChunkSize;
    else if (te) {
      this.st = St.Eof;
      this.closeAfter = true;
    } else if (length >= 0) {
      this.remaining = length;
      this.st = length === 0 ? St.Idle : St.Length;
    } else {
      this.st = St.Eof;
      this.closeAfter = true;
    }
    return false;
  }

  private addBody(buf: Buffer, from: number, to: number, whole: boolean): void {
    if (to <= from) return;
    if (whole) this.bodyStr = buf.toString('utf8', from, to);
    else (this.body ??= []).push(Buffer.from(buf.subarray(from, to)));
    this.bodyBytes += to - from;
  }

  /** Body progress: the idle timeout starts over. */
  private touch(): void {
    const r = this.req;
    if (r) r.deadline = performance.now() + r.timeoutMs;
  }

  private complete(): void {
    const r = this.req!;
    let body = this.bodyStr ?? (this.body ? (this.body.length === 1 ? this.body[0].toString('utf8') : Buffer.concat(this.body).toString('utf8')) : '');
    if (body.charCodeAt(0) === 0xfeff) body = body.slice(1);
    const res: LeanResponse = { statusCode: this.status, rawHeaders: this.rawHeaders, body, bodyBytes: this.bodyBytes, wireBytesSent: r.head.length, wireBytesReceived: this.wireBytes };
    this.reset();
    this.req = undefined;
    this.client.done(r);
    if (this.closeAfter || this.keepAliveMs <= 0) this.socket.destroy();
    else {
      this.reused = true;
      this.gotBytes = false;
      this.idleUntil = performance.now() + this.keepAliveMs;
      this.socket.unref();
      this.origin.idle.push(this);
    }
    r.onOk(res);
  }

  private reset(): void {
    this.st = St.Idle;
    this.status = 0;
    this.rawHeaders = '';
    this.remaining = 0;
    this.pending = undefined;
    this.line = '';
    this.body = undefined;
    this.bodyStr = undefined;
    this.bodyBytes = 0;
    this.wireBytes = 0;
  }

  /** Fails the request in flight and drops the connection. */
  fail(err: Error): void {
    const r = this.req;
    this.req = undefined;
    this.closed = true;
    this.socket.destroy();
    if (r) {
      this.client.done(r);
      r.onErr(err);
    }
  }

  private onClose(): void {
    this.closed = true;
    const idle = this.origin.idle;
    const i = idle.indexOf(this);
    if (i >= 0) idle.splice(i, 1);
    const r = this.req;
    if (!r) return;
    if (this.st === St.Eof) {
      this.closeAfter = true;
      this.complete();
      return;
    }
    this.req = undefined;
    this.client.done(r);
    // a keep-alive socket the server closed as we reused it: once more on a fresh one
    if (this.reused && !this.gotBytes && !r.retried && IDEMPOTENT.has(r.method) && !r.signal.aborted) {
      r.retried = true;
      this.client.start(r);
      return;
    }
    const e = this.error;
    r.onErr(e && !this.gotBytes ? e : new RawHttpError('other side closed', 'UND_ERR_SOCKET'));
  }
}
