import type { Dispatcher } from 'undici';

/**
 * What `net` needs of a response: status, the header block as received
 * (`Name: value` lines joined by CRLF, parsed only when a script reads
 * headers), the body as text and its size on the wire.
 */
export interface LeanResponse {
  statusCode: number;
  rawHeaders: string;
  body: string;
  bodyBytes: number;
  /** the request and the response on the wire, head included (k6's data_sent / data_received) */
  wireBytesSent: number;
  wireBytesReceived: number;
}

/** A header block -> lower-cased names, repeated headers joined with ", " (undici's way). */
export function parseHeaderBlock(raw: string): Record<string, string> {
  const headers: Record<string, string> = {};
  let pos = 0;
  while (pos < raw.length) {
    let next = raw.indexOf('\r\n', pos);
    if (next < 0) next = raw.length;
    const colon = raw.indexOf(':', pos);
    if (colon > pos && colon < next) {
      const name = raw.slice(pos, colon).toLowerCase();
      const value = raw.slice(colon + 1, next).trim();
      const prev = headers[name];
      headers[name] = prev === undefined ? value : `${prev}, ${value}`;
    }
    pos = next + 2;
  }
  return headers;
}

export interface LeanRequest {
  origin: string;
  /** path and query */
  path: string;
  method: string;
  headers: Record<string, string>;
  body?: string;
  signal: AbortSignal;
  headersTimeout: number;
  bodyTimeout: number;
}

/**
 * One HTTP request through undici's dispatcher with a plain handler: no
 * response stream, no per-request AbortSignal plumbing. Under load the stream
 * machinery of `request()` + `body.text()` costs about as much as the request
 * itself. Same dispatcher, timeouts and errors as `dispatcher.request`; an
 * abort of `signal` fails the request with the signal's reason.
 */
export function leanRequest(dispatcher: Dispatcher, req: LeanRequest): Promise<LeanResponse> {
  return new Promise<LeanResponse>((resolve, reject) => {
    const { signal } = req;
    let statusCode = 0;
    let raw: Buffer[] | string[] | null = null;
    let first: Buffer | undefined;
    let more: Buffer[] | undefined;
    let bodyBytes = 0;
    let onAbort: (() => void) | undefined;
    const cleanup = () => {
      if (onAbort) signal.removeEventListener('abort', onAbort);
      onAbort = undefined;
    };
    const handler: Dispatcher.DispatchHandler = {
      onConnect(abort: (err?: Error) => void) {
        if (signal.aborted) return abort(signal.reason as Error);
        onAbort = () => abort(signal.reason as Error);
        signal.addEventListener('abort', onAbort, { once: true });
      },
      onHeaders(status: number, rawHeaders: Buffer[] | string[]) {
        statusCode = status;
        raw = rawHeaders;
        return true;
      },
      onData(chunk: Buffer) {
        bodyBytes += chunk.length;
        if (!first) first = chunk;
        else (more ??= [first]).push(chunk);
        return true;
      },
      onComplete() {
        cleanup();
        const h = raw ?? [];
        let rawHeaders = '';
        for (let i = 0; i + 1 < h.length; i += 2) rawHeaders += `${i ? '\r\n' : ''}${h[i].toString()}: ${h[i + 1].toString()}`;
        let body = more ? Buffer.concat(more).toString('utf8') : first ? first.toString('utf8') : '';
        if (body.charCodeAt(0) === 0xfeff) body = body.slice(1);
        // undici does not say what it wrote and read: the HTTP/1.1 bytes of the same exchange
        let sent = Buffer.byteLength(`${req.method} ${req.path} HTTP/1.1\r\nhost: ${req.origin.replace(/^\w+:\/\//, '')}\r\nconnection: keep-alive\r\n\r\n`);
        for (const k in req.headers) sent += Buffer.byteLength(`${k}: ${req.headers[k]}\r\n`);
        if (req.body !== undefined) sent += Buffer.byteLength(req.body) + `content-length: ${Buffer.byteLength(req.body)}\r\n`.length;
        const received = Buffer.byteLength(`HTTP/1.1 ${statusCode} \r\n${rawHeaders}\r\n\r\n`) + bodyBytes;
        resolve({ statusCode, rawHeaders, body, bodyBytes, wireBytesSent: sent, wireBytesReceived: received });
      },
      onError(err: Error) {
        cleanup();
        reject(err);
      },
    };
    dispatcher.dispatch(
      { origin: req.origin, path: req.path, method: req.method as Dispatcher.HttpMethod, headers: req.headers, body: req.body, headersTimeout: req.headersTimeout, bodyTimeout: req.bodyTimeout },
      handler,
    );
  });
}
