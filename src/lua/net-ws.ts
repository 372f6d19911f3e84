import { LuaMultiReturn } from 'wasmoon';
import type { LuaModuleContext } from './modules/module-types';
import { errorMessage, luaDurationMs, luaOptions } from './lua-values';
import { tlsDispatcher, tlsOptionsOf } from './net-tls';
import type { NetCookies } from './net-cookies';

const DEFAULT_TIMEOUT_MS = 60_000;
/** messages a connection keeps unread before it drops the oldest: a bound for scripts that never receive */
const MAX_QUEUED = 10_000;
const MAX_OPEN = 10_000;

interface WsConn {
  ws: import('undici').WebSocket;
  name: string;
  queue: string[];
  closed: string | undefined;
  waiter: ((r: LuaMultiReturn) => void) | undefined;
  timeoutMs: number;
}

function result(...v: unknown[]): LuaMultiReturn {
  const r = new LuaMultiReturn(v.length);
  for (let i = 0; i < v.length; i++) r[i] = v[i];
  return r;
}

/**
 * `net.ws(url [, {headers=, protocols=, timeout=}])`: WebSocket connections
 * on undici's client (already a dependency; the TLS options go through the
 * same dispatchers as HTTPS). Messages are queued as they arrive;
 * `receive` takes the oldest or waits for the next one.
 */
export class NetWebSockets {
  private readonly conns = new Map<number, WsConn>();
  private nextId = 1;

  constructor(
    private readonly ctx: LuaModuleContext,
    private readonly resolve: (url: string) => string,
    private readonly cookies: NetCookies,
  ) {}

  async open(urlIn: unknown, optsIn: unknown): Promise<LuaMultiReturn> {
    if (typeof urlIn !== 'string' || urlIn === '') throw new Error('net.ws: expected a ws:// or wss:// URL');
    const what = `net.ws ${urlIn}`;
    if (!/^wss?:\/\//i.test(urlIn)) throw new Error(`${what}: the URL must start with ws:// or wss://`);
    if (this.conns.size >= MAX_OPEN) throw new Error(`${what}: more than ${MAX_OPEN} open connections (close them with ws:close())`);
    const opts = luaOptions(optsIn, 'net.ws');
    const timeoutMs = luaDurationMs(opts.timeout, 'net.ws timeout') ?? DEFAULT_TIMEOUT_MS;
    // service names resolve as for http(s) URLs; the service's scheme decides ws or wss
    const httpUrl = this.resolve(urlIn.replace(/^ws/i, 'http'));
    const url = httpUrl.replace(/^http/i, 'ws');
    const headers: Record<string, string> = {};
    if (opts.headers !== undefined && opts.headers !== null) {
      for (const [k, v] of Object.entries(luaOptions(opts.headers, 'net.ws headers'))) if (v !== undefined && v !== null) headers[k.toLowerCase()] = String(v);
    }
    if (opts.cookies !== false && headers.cookie === undefined) {
      const c = this.cookies.header(urlIn.replace(/^ws/i, 'http'));
      if (c) headers.cookie = c;
    }
    const protocols = opts.protocols === undefined || opts.protocols === null ? [] : Array.isArray(opts.protocols) ? opts.protocols.map(String) : [String(opts.protocols)];
    const tls = tlsOptionsOf(opts, this.ctx.task, 'net.ws');
    const { WebSocket } = require('undici') as typeof import('undici');
    const t0 = performance.now();
    const ws = new WebSocket(url, { protocols, headers, ...(tls && url.startsWith('wss:') ? { dispatcher: tlsDispatcher(tls) } : {}) });
    const conn: WsConn = { ws, name: typeof opts.name === 'string' ? opts.name : urlIn, queue: [], closed: undefined, waiter: undefined, timeoutMs };
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => fail(new Error(`no connection within ${timeoutMs}ms`)), timeoutMs);
      const onAbort = () => fail(new Error('cancelled'));
      this.ctx.signal.addEventListener('abort', onAbort, { once: true });
      let done = false;
      const fail = (e: Error) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        this.ctx.signal.removeEventListener('abort', onAbort);
        try {
          ws.close();
        } catch {
          // not open yet
        }
        reject(new Error(`${what}: ${errorMessage(e)}`));
      };
      ws.addEventListener('open', () => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        this.ctx.signal.removeEventListener('abort', onAbort);
        resolve();
      });
      ws.addEventListener('error', (ev) => {
        const err = (ev as unknown as { error?: unknown }).error;
        fail(err instanceof Error ? err : new Error('the handshake failed'));
      });
      ws.addEventListener('close', (ev) => fail(new Error(`closed during the handshake (code ${ev.code}${ev.reason ? `: ${ev.reason}` : ''})`)));
    });
    this.ctx.metrics?.ws?.('ws_connecting', performance.now() - t0, conn.name);
    ws.binaryType = 'arraybuffer';
    ws.addEventListener('message', (ev) => {
      const data = typeof ev.data === 'string' ? ev.data : Buffer.from(ev.data as ArrayBuffer).toString('utf8');
      this.ctx.metrics?.ws?.('ws_msgs_received', 1, conn.name);
      if (conn.waiter) {
        const w = conn.waiter;
        conn.waiter = undefined;
        w(result(data));
        return;
      }
      if (conn.queue.length >= MAX_QUEUED) conn.queue.shift();
      conn.queue.push(data);
    });
    ws.addEventListener('close', () => {
      conn.closed ??= 'closed';
      if (conn.waiter) {
        const w = conn.waiter;
        conn.waiter = undefined;
        w(result(undefined, 'closed'));
      }
    });
    const id = this.nextId++;
    this.conns.set(id, conn);
    return result(id, ws.protocol);
  }

  private conn(id: unknown, fn: string): WsConn {
    const c = this.conns.get(Number(id));
    if (!c) throw new Error(`ws:${fn}: not a connection of net.ws (or closed already)`);
    return c;
  }

  send(id: unknown, data: unknown): void {
    const c = this.conn(id, 'send');
    if (c.closed !== undefined || c.ws.readyState !== 1) throw new Error(`ws:send ${c.name}: the connection is closed`);
    const text = typeof data === 'object' && data !== null ? JSON.stringify(data) : data === undefined || data === null ? '' : String(data);
    c.ws.send(text);
    this.ctx.metrics?.ws?.('ws_msgs_sent', 1, c.name);
  }

  receive(id: unknown, timeout: unknown): LuaMultiReturn | Promise<LuaMultiReturn> {
    const c = this.conn(id, 'receive');
    if (c.queue.length > 0) return result(c.queue.shift());
    if (c.closed !== undefined) return result(undefined, 'closed');
    if (c.waiter) throw new Error(`ws:receive ${c.name}: another receive is waiting on this connection`);
    const timeoutMs = timeout === undefined || timeout === null ? c.timeoutMs : (luaDurationMs(timeout, 'ws:receive timeout') ?? c.timeoutMs);
    return new Promise<LuaMultiReturn>((resolve) => {
      const onAbort = () => finish(result(undefined, 'closed'));
      const timer = setTimeout(() => finish(result(undefined, 'timeout')), timeoutMs);
      const finish = (r: LuaMultiReturn) => {
        clearTimeout(timer);
        this.ctx.signal.removeEventListener('abort', onAbort);
        if (c.waiter === finish) c.waiter = undefined;
        resolve(r);
      };
      this.ctx.signal.addEventListener('abort', onAbort, { once: true });
      c.waiter = finish;
    });
  }

  close(id: unknown): void {
    const c = this.conns.get(Number(id));
    if (!c) return;
    this.conns.delete(Number(id));
    c.closed ??= 'closed';
    try {
      c.ws.close(1000);
    } catch {
      // closing already
    }
  }

  closeAll(): void {
    for (const id of [...this.conns.keys()]) this.close(id);
  }
}
