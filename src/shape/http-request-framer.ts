/**
 * Finds HTTP/1.x request boundaries in the client-to-server byte stream so the
 * proxy can answer single requests itself (http_fault) while forwarding all
 * other bytes untouched, without re-encoding anything. Parser libraries hand out
 * parsed events, not the byte spans we need to drop or forward, hence this small
 * framer. Anything it cannot frame (oversized or malformed heads, upgrades,
 * CONNECT) switches the connection to plain passthrough for good.
 */

export interface RequestHead {
  method: string;
  /** request target as sent, e.g. `/users/alice?x=1` */
  target: string;
  /** whether the connection stays open after the response */
  keepAlive: boolean;
}

interface ParsedRequestHead extends RequestHead {
  expectContinue: boolean;
}

export interface FramerSink {
  /** bytes to send to the server, in order */
  forward(bytes: Buffer): void;
  /** a dropped request is complete: answer it */
  answer(head: RequestHead, status: number): void;
}

/** Returns a status to answer the request with, or undefined to forward it. */
export type RequestJudge = (head: RequestHead) => number | undefined;

const MAX_HEAD_BYTES = 64 * 1024;
const MAX_CHUNK_LINE_BYTES = 4 * 1024;
const CRLFCRLF = Buffer.from('\r\n\r\n');

type State = 'head' | 'body' | 'chunk-size' | 'chunk-data' | 'chunk-data-end' | 'trailer' | 'passthrough' | 'discard';

export class HttpRequestFramer {
  private state: State = 'head';
  /** head bytes or a chunk-size/trailer line still incomplete */
  private pending: Buffer | undefined;
  private remaining = 0;
  private head: RequestHead | undefined;
  /** the current request is answered by us: drop its bytes */
  private dropStatus: number | undefined;
  private afterHead: 'passthrough' | undefined;
  /**
   * During push: where the run of bytes to forward that was not handed out yet
   * starts (a field, not a closure's variable: push runs once per request and
   * its closures were a third of the framer's garbage).
   */
  private runStart = 0;
  /** count of requests seen (forwarded + answered) */
  requests = 0;

  constructor(private readonly judge: RequestJudge) {}

  get isPassthrough(): boolean {
    return this.state === 'passthrough';
  }

  push(chunk: Buffer, sink: FramerSink): void {
    if (this.state === 'passthrough') {
      sink.forward(chunk);
      return;
    }
    if (this.state === 'discard') return;
    // Common case: a chunk holds whole forwarded requests; it is sent as is.
    let buf = chunk;
    if (this.pending) {
      buf = Buffer.concat([this.pending, chunk]);
      this.pending = undefined;
    }
    let pos = 0;
    this.runStart = 0;
    while (pos < buf.length) {
      switch (this.state) {
        case 'passthrough':
          this.flushRun(buf, pos, sink);
          this.flushRun(buf, buf.length, sink);
          return;
        case 'head': {
          const end = buf.indexOf(CRLFCRLF, pos);
          if (end < 0) {
            // a protocol that is not HTTP (a database, redis) sends short messages without a blank line: do not hold them
            if (buf.length - pos > MAX_HEAD_BYTES || !mayStartRequestLine(buf, pos)) {
              this.state = 'passthrough';
              continue;
            }
            this.flushRun(buf, pos, sink);
            this.pending = Buffer.from(buf.subarray(pos));
            return;
          }
          const headEnd = end + 4;
          const parsed = parseHead(buf, pos, end);
          if (!parsed) {
            this.state = 'passthrough';
            continue;
          }
          this.requests++;
          this.head = parsed.head;
          this.dropStatus = this.judge(parsed.head);
          this.afterHead = parsed.upgrade && this.dropStatus === undefined ? 'passthrough' : undefined;
          if (this.dropStatus !== undefined) this.skipTo(buf, pos, headEnd, sink);
          pos = headEnd;
          const hasBody = parsed.chunked || parsed.contentLength > 0;
          if (this.dropStatus !== undefined && hasBody && parsed.head.expectContinue) {
            // The client waits for "100 Continue" before sending the body, so we must
            // answer now; whether the body follows anyway is unknowable, so the
            // answer closes the connection and the rest of its input is dropped.
            const status = this.dropStatus;
            this.dropStatus = undefined;
            this.head = undefined;
            this.state = 'discard';
            sink.answer({ method: parsed.head.method, target: parsed.head.target, keepAlive: false }, status);
            return;
          }
          if (this.afterHead === 'passthrough') {
            this.state = 'passthrough';
          } else if (parsed.chunked) {
            this.state = 'chunk-size';
          } else if (parsed.contentLength > 0) {
            this.remaining = parsed.contentLength;
            this.state = 'body';
          } else {
            this.endMessage(sink, buf, pos);
          }
          break;
        }
        case 'body': {
          const take = Math.min(this.remaining, buf.length - pos);
          if (this.dropStatus !== undefined) this.skipTo(buf, pos, pos + take, sink);
          pos += take;
          this.remaining -= take;
          if (this.remaining === 0) this.endMessage(sink, buf, pos);
          break;
        }
        case 'chunk-size':
        case 'trailer':
        case 'chunk-data-end': {
          const nl = buf.indexOf(10, pos);
          if (nl < 0) {
            if (buf.length - pos > MAX_CHUNK_LINE_BYTES) {
              this.state = 'passthrough';
              continue;
            }
            if (this.dropStatus !== undefined) this.skipTo(buf, pos, buf.length, sink);
            else this.flushRun(buf, pos, sink);
            // keep the partial line for the next chunk; it is forwarded (or dropped) then
            this.pending = Buffer.from(buf.subarray(pos));
            if (this.dropStatus === undefined) this.runStart = buf.length;
            return;
          }
          const line = buf.toString('latin1', pos, nl).replace(/\r$/, '');
          if (this.dropStatus !== undefined) this.skipTo(buf, pos, nl + 1, sink);
          pos = nl + 1;
          if (this.state === 'chunk-data-end') {
            this.state = 'chunk-size';
          } else if (this.state === 'chunk-size') {
            const size = parseInt(line.split(';')[0].trim(), 16);
            if (!Number.isFinite(size) || size < 0) {
              this.state = 'passthrough';
              continue;
            }
            if (size === 0) this.state = 'trailer';
            else {
              this.remaining = size;
              this.state = 'chunk-data';
            }
          } else if (line === '') {
            this.endMessage(sink, buf, pos);
          }
          break;
        }
        case 'chunk-data': {
          const take = Math.min(this.remaining, buf.length - pos);
          if (this.dropStatus !== undefined) this.skipTo(buf, pos, pos + take, sink);
          pos += take;
          this.remaining -= take;
          if (this.remaining === 0) this.state = 'chunk-data-end';
          break;
        }
      }
    }
    this.flushRun(buf, buf.length, sink);
  }

  /** Hands out buf[runStart, end): the run of bytes to forward not handed out yet. */
  private flushRun(buf: Buffer, end: number, sink: FramerSink): void {
    const start = this.runStart;
    if (end > start) sink.forward(start === 0 && end === buf.length ? buf : buf.subarray(start, end));
    this.runStart = end;
  }

  /** Dropped bytes buf[pos, end): hand out what came before them, then move past them. */
  private skipTo(buf: Buffer, pos: number, end: number, sink: FramerSink): void {
    this.flushRun(buf, pos, sink);
    this.runStart = end;
  }

  private endMessage(sink: FramerSink, buf: Buffer, pos: number): void {
    this.state = 'head';
    const status = this.dropStatus;
    const head = this.head;
    this.dropStatus = undefined;
    this.head = undefined;
    if (status !== undefined && head) {
      // bytes of earlier forwarded requests go out before our answer
      this.flushRun(buf, pos, sink);
      sink.answer(head, status);
    }
  }
}

interface ParsedHead {
  head: ParsedRequestHead;
  contentLength: number;
  chunked: boolean;
  upgrade: boolean;
}

const CRLF = Buffer.from('\r\n');
/** the request line's end, its minor version digit checked apart */
const HTTP1_VERSION = Buffer.from('HTTP/1.x', 'latin1');

/**
 * Parses the head in buf[start, end) (without its blank line). Works on the
 * bytes and makes strings only of the request line and of the few headers it
 * reads: this runs for every request in http mode, and the garbage of a
 * split-and-trim parse was a third of the mode's allocations (GC pauses are
 * the proxy's tail, bench/proxy-tail.ts). Same results as reading the head as
 * latin1 text: stray CRLFs before it skipped, lines split at CRLF, header names
 * compared trimmed and case-insensitively, values trimmed.
 */
function parseHead(buf: Buffer, start: number, end: number): ParsedHead | undefined {
  // tolerate stray CRLFs between requests (RFC 9112 2.2)
  let p = start;
  while (p + 1 < end && buf[p] === 13 && buf[p + 1] === 10) p += 2;
  // the head ends with CRLFCRLF at `end`, so a CRLF is always found at or before it
  let lineEnd = buf.indexOf(CRLF, p);
  // METHOD SP TARGET SP HTTP/1.x, read on the bytes as
  // /^([A-Z!#$%&'*+.^_`|~0-9-]+) (\S+) HTTP\/1\.([01])$/ would read the latin1 text
  let i = p;
  while (i < lineEnd && isMethodByte(buf[i])) i++;
  if (i === p || buf[i] !== 32) return undefined;
  const methodEnd = i;
  const targetStart = ++i;
  while (i < lineEnd && !isLatin1Space(buf[i])) i++;
  if (i === targetStart || lineEnd - i !== HTTP1_VERSION.length + 1 || buf[i] !== 32 || buf.compare(HTTP1_VERSION, 0, HTTP1_VERSION.length - 1, i + 1, lineEnd - 1) !== 0) return undefined;
  const minor = buf[lineEnd - 1];
  if (minor !== 48 && minor !== 49) return undefined;
  const method = buf.toString('latin1', p, methodEnd);
  const target = buf.toString('latin1', targetStart, i);
  let contentLength = 0;
  let chunked = false;
  let connection = '';
  let upgradeHeader = false;
  let expectContinue = false;
  while (lineEnd < end) {
    const ls = lineEnd + 2;
    lineEnd = buf.indexOf(CRLF, ls);
    const colon = buf.indexOf(58, ls);
    if (colon <= ls || colon >= lineEnd) return undefined;
    let ns = ls;
    let ne = colon;
    while (ns < ne && isLatin1Space(buf[ns])) ns++;
    while (ne > ns && isLatin1Space(buf[ne - 1])) ne--;
    const name = headerOfInterest(buf, ns, ne);
    if (name === undefined) continue;
    const value = buf.toString('latin1', colon + 1, lineEnd).trim();
    if (name === 'content-length') {
      if (!/^\d+$/.test(value)) return undefined;
      contentLength = Number(value);
    } else if (name === 'transfer-encoding') {
      chunked = /(^|,)\s*chunked\s*$/i.test(value);
      if (!chunked) return undefined;
    } else if (name === 'connection') {
      connection += `${value.toLowerCase()},`;
    } else if (name === 'upgrade') {
      upgradeHeader = true;
    } else if (name === 'expect') {
      expectContinue = value.toLowerCase() === '100-continue';
    }
  }
  // most requests have no Connection header: no token list for them
  let keepAlive = minor === 49;
  let upgradeToken = false;
  if (connection !== '') {
    const tokens = connection.split(',').map((t) => t.trim());
    keepAlive = minor === 49 ? !tokens.includes('close') : tokens.includes('keep-alive');
    upgradeToken = tokens.includes('upgrade');
  }
  return {
    head: { method, target, keepAlive, expectContinue },
    contentLength: chunked ? 0 : contentLength,
    chunked,
    upgrade: method === 'CONNECT' || (upgradeHeader && upgradeToken),
  };
}

const HEADERS_OF_INTEREST = ['content-length', 'transfer-encoding', 'connection', 'upgrade', 'expect'] as const;
type HeaderOfInterest = (typeof HEADERS_OF_INTEREST)[number];

/** A byte of a method token as the request line accepts it: A-Z, digits, !#$%&'*+-.^_`|~ */
function isMethodByte(b: number): boolean {
  return (b >= 65 && b <= 90) || (b >= 48 && b <= 57) || b === 33 || (b >= 35 && b <= 39) || b === 42 || b === 43 || b === 45 || b === 46 || (b >= 94 && b <= 96) || b === 124 || b === 126;
}

/** What String.prototype.trim strips, among the code points latin1 decodes to. */
function isLatin1Space(b: number): boolean {
  return b === 32 || (b >= 9 && b <= 13) || b === 0xa0;
}

/** The header name in buf[s, e) if it is one the framer reads (ASCII case-insensitive; no other latin1 letter lowercases to ASCII). */
function headerOfInterest(buf: Buffer, s: number, e: number): HeaderOfInterest | undefined {
  const len = e - s;
  for (const name of HEADERS_OF_INTEREST) {
    if (name.length !== len) continue;
    let i = 0;
    for (; i < len; i++) {
      const b = buf[s + i];
      if ((b >= 65 && b <= 90 ? b + 32 : b) !== name.charCodeAt(i)) break;
    }
    if (i === len) return name;
  }
  return undefined;
}

const TOKEN_CHAR = /[!#$%&'*+.^_`|~0-9A-Za-z-]/;
const MAX_METHOD_CHARS = 24;

/** Whether the bytes from `pos` could still be the start of an HTTP/1.x request line (`METHOD SP ...`). */
function mayStartRequestLine(buf: Buffer, pos: number): boolean {
  const end = Math.min(buf.length, pos + MAX_METHOD_CHARS + 1);
  for (let i = pos; i < end; i++) {
    const c = String.fromCharCode(buf[i]);
    if (c === ' ') return i > pos;
    if (!TOKEN_CHAR.test(c)) return false;
  }
  return end - pos <= MAX_METHOD_CHARS;
}
