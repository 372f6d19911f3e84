import { STATUS_CODES } from 'node:http';
import { LuaMultiReturn } from 'wasmoon';
import { Deferred } from '../deferred';
import { setTimeout as delay } from 'node:timers/promises';
import type { Dispatcher } from 'undici';
import { leanRequest, parseHeaderBlock, type LeanResponse } from '../vu-http';
import { rawHttpClient } from '../vu-raw-http';
import type { EndpointMap } from '../../backends/backend';
import type { LuaModuleContext, LuaModuleInstance } from './module-types';
import { errorMessage, luaDurationMs, luaOptions } from '../lua-values';
import type { GrpcCaller } from './grpc';
import { hasTlsOptions, tlsDispatcher, tlsOptionsOf } from '../net-tls';
import { NetCookies } from '../net-cookies';
import { NetWebSockets } from '../net-ws';

const DEFAULT_TIMEOUT_MS = 60_000;

// The raw client stands in for undici's default dispatcher only: a dispatcher
// set by someone else (proxy, mock) is used as is. undici is loaded on the
// first request the raw client leaves to it (it costs a load worker ~70 ms).
const DISPATCHER_KEY = Symbol.for('undici.globalDispatcher.1');
const g = globalThis as unknown as Record<symbol, Dispatcher | undefined>;
let defaultDispatcher: Dispatcher | undefined = g[DISPATCHER_KEY];
let undiciModule: typeof import('undici') | undefined;
function globalDispatcher(): Dispatcher {
  if (!undiciModule) {
    const before = g[DISPATCHER_KEY];
    undiciModule = require('undici') as typeof import('undici');
    if (before === undefined) defaultDispatcher = g[DISPATCHER_KEY];
  }
  return undiciModule.getGlobalDispatcher();
}
const rawEnabled = process.env.TOPAS_RAW_HTTP !== '0';
function rawAllowed(): boolean {
  if (!rawEnabled) return false;
  const d = g[DISPATCHER_KEY];
  return d === undefined || d === defaultDispatcher;
}


/**
 * Lua-side sugar: verbs and the response table. JS hands back (status, body,
 * time_ms, raw header block); the table is made here, and `headers` and
 * `status_text` are filled in on first use (also by pairs()), because under
 * load pushing every header into Lua cost more than the request itself.
 */
const NET_SHIM = String.raw`
local js, h = ...
local decode = h.json.decode
local parse_headers, status_text = js.parse_headers, js.status_text
local rawget, rawset, setmetatable, next = rawget, rawset, setmetatable, next
local function json_method(self) return decode(self.body) end
local function fill(t)
  if rawget(t, "headers") == nil then rawset(t, "headers", parse_headers(rawget(t, "raw_headers") or "")) end
  if rawget(t, "status_text") == nil then rawset(t, "status_text", status_text(rawget(t, "status"))) end
end
local RESPONSE = {
  __index = function(t, k)
    if k == "json" then return json_method end
    if k == "headers" or k == "status_text" then
      fill(t)
      return rawget(t, k)
    end
    return nil
  end,
  __pairs = function(t)
    fill(t)
    return next, t, nil
  end,
}
local function response(status, body, time_ms, raw)
  return setmetatable({ code = status, status = status, body = body, time_ms = time_ms, raw_headers = raw }, RESPONSE)
end
-- the hot call, settled here rather than through the generic wrapper
local raw_request, ASYNC, ERR, ASSERT, co_yield, raise, raise_assert = h.raw.request, h.ASYNC, h.ERR, h.ASSERT, h.yield, h.raise, h.raise_assert
local function request(method, url, body, opts)
  local a, b, c, d = raw_request(method, url, body, opts)
  if a == ASYNC then
    local ok
    ok, a, b, c, d = co_yield(ASYNC)
    if ok ~= true then
      if ok == "assert" then raise_assert(a) end
      raise(a)
    end
  elseif a == ERR then
    raise(b)
  elseif a == ASSERT then
    raise_assert(b)
  end
  return response(a, b, c, d)
end
local M = {}
function M.request(o)
  if type(o) ~= "table" then h.raise("net.request: expected a table {method=, url=, ...}") end
  return request(o.method or "GET", o.url, o.body, o)
end
function M.get(url, opts) return request("GET", url, nil, opts) end
function M.head(url, opts) return request("HEAD", url, nil, opts) end
function M.delete(url, opts) return request("DELETE", url, nil, opts) end
function M.post(url, body, opts) return request("POST", url, body, opts) end
function M.put(url, body, opts) return request("PUT", url, body, opts) end
function M.patch(url, body, opts) return request("PATCH", url, body, opts) end
function M.wait_http(url, opts) return response(js.wait_http(url, opts)) end
M.resolve = js.resolve
M.grpc = js.grpc
M.cookies = js.cookies
M.clear_cookies = js.clear_cookies
local WS = {}
WS.__index = WS
WS.__name = "net.ws"
WS.__tostring = function(c) return "net.ws(" .. c.url .. ")" end
local function ws_check(c, fn)
  if getmetatable(c) ~= WS then h.raise("ws:" .. fn .. ": call it as ws:" .. fn .. "(...) on a connection from net.ws") end
end
function WS.send(c, data) ws_check(c, "send"); js.ws_send(c.id, data) end
function WS.receive(c, timeout) ws_check(c, "receive"); return js.ws_receive(c.id, timeout) end
function WS.close(c) ws_check(c, "close"); js.ws_close(c.id) end
function M.ws(url, opts)
  local id, protocol = js.ws_open(url, opts)
  return setmetatable({ id = id, url = url, protocol = protocol }, WS)
end
return M
`;

/**
 * Turns `http://api/users` (or `http://api:8080/users`) into the service's
 * current endpoint, round-robin over replicas. Other hosts pass through.
 */
export function createUrlResolver(endpoints: () => EndpointMap): (url: string) => string {
  const next = new Map<string, number>();
  return (raw: string) => {
    let u: URL;
    try {
      u = new URL(raw);
    } catch {
      throw new Error(`invalid URL "${raw}"`);
    }
    const svc = endpoints()[u.hostname];
    if (!svc || svc.kind !== 'service') return raw;
    if (svc.urls.length === 0) throw new Error(`service "${u.hostname}" has no ready endpoint`);
    const i = next.get(u.hostname) ?? 0;
    next.set(u.hostname, i + 1);
    const base = new URL(svc.urls[i % svc.urls.length]);
    const basePath = base.pathname.replace(/\/$/, '');
    return `${base.protocol}//${base.host}${basePath}${u.pathname}${u.search}`;
  };
}

interface ParsedUrl {
  hostname: string;
  origin: string;
  pathname: string;
  /** pathname + search */
  path: string;
}

// load tests request the same few URLs millions of times: parse each once
const parsedUrls = new Map<string, ParsedUrl>();
function parseUrlCached(raw: string): ParsedUrl {
  const hit = parsedUrls.get(raw);
  if (hit) return hit;
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new Error(`invalid URL "${raw}"`);
  }
  const p = { hostname: u.hostname, origin: u.origin, pathname: u.pathname, path: `${u.pathname}${u.search}` };
  if (parsedUrls.size >= 1000) parsedUrls.clear();
  parsedUrls.set(raw, p);
  return p;
}

/** k6's `name` tag: opts.name, opts.tags.name, else the URL as the script wrote it (service names kept). */
function requestName(opts: Record<string, unknown>, url: string): string {
  if (typeof opts.name === 'string') return opts.name;
  const tags = opts.tags as Record<string, unknown> | undefined;
  if (tags && typeof tags === 'object' && typeof tags.name === 'string') return tags.name;
  return url;
}

const KNOWN_METHODS = new Set(['GET', 'HEAD', 'DELETE', 'POST', 'PUT', 'PATCH', 'OPTIONS']);
const whats = new Map<string, string>();
/** `net.get` for GET: made once per method */
function whatOf(method: string): string {
  let w = whats.get(method);
  if (w === undefined) {
    w = `net.${method.toLowerCase()}`;
    if (whats.size < 100) whats.set(method, w);
  }
  return w;
}

export function createNetModule(ctx: LuaModuleContext): LuaModuleInstance {
  const resolve = createUrlResolver(ctx.endpoints);
  const next = new Map<string, number>();
  // @grpc/grpc-js and protobufjs load on the first net.grpc call
  let grpcCaller: GrpcCaller | undefined;
  const grpc = (): GrpcCaller => (grpcCaller ??= (require('./grpc') as typeof import('./grpc')).createGrpcCaller(ctx));
  // browser-like: one jar per scenario run (per VU under load)
  const cookies = new NetCookies();
  let sockets: NetWebSockets | undefined;
  const ws = (): NetWebSockets => (sockets ??= new NetWebSockets(ctx, resolve, cookies));

  function send(method: string, url: string, body: unknown, optsIn: unknown, what: string): Deferred<LuaMultiReturn> {
    const opts = luaOptions(optsIn, what);
    const headers: Record<string, string> = {};
    if (opts.headers !== undefined && opts.headers !== null) {
      const given = luaOptions(opts.headers, `${what} headers`);
      for (const k in given) {
        const v = given[k];
        if (v !== undefined && v !== null) headers[k.toLowerCase()] = String(v);
      }
    }
    let payload: string | undefined;
    const json = opts.json !== undefined && opts.json !== null ? opts.json : typeof body === 'object' && body !== null ? body : undefined;
    if (json !== undefined) {
      payload = JSON.stringify(json);
      headers['content-type'] ??= 'application/json';
    } else if (body !== undefined && body !== null) {
      payload = String(body);
    }
    // same resolution as createUrlResolver, without parsing URLs per request
    const parsed = parseUrlCached(url);
    let origin = parsed.origin;
    let path = parsed.path;
    const svc = ctx.endpoints()[parsed.hostname];
    if (svc && svc.kind === 'service') {
      if (svc.urls.length === 0) throw new Error(`service "${parsed.hostname}" has no ready endpoint`);
      const i = next.get(parsed.hostname) ?? 0;
      next.set(parsed.hostname, i + 1);
      const base = parseUrlCached(svc.urls[i % svc.urls.length]);
      origin = base.origin;
      path = `${base.pathname.replace(/\/$/, '')}${parsed.path}`;
    }
    if (opts.query !== undefined && opts.query !== null) {
      const u = new URL(origin + path);
      for (const [k, v] of Object.entries(luaOptions(opts.query, `${what} query`))) {
        if (Array.isArray(v)) for (const x of v) u.searchParams.append(k, String(x));
        else if (v !== undefined && v !== null) u.searchParams.append(k, String(v));
      }
      path = `${u.pathname}${u.search}`;
    }
    // the jar works on the URL as the script wrote it: a service name is the cookie's host
    const useJar = opts.cookies !== false;
    if (useJar) {
      const c = cookies.header(url);
      if (c !== undefined) headers.cookie = headers.cookie === undefined ? c : `${headers.cookie}; ${c}`;
    }
    const timeoutMs = opts.timeout === undefined || opts.timeout === null ? DEFAULT_TIMEOUT_MS : (luaDurationMs(opts.timeout, `${what} timeout`) ?? DEFAULT_TIMEOUT_MS);
    // undici's own timeouts: a per-request AbortSignal.any + AbortSignal.timeout costs more than the request under load
    const signal = ctx.signal;
    const t0 = performance.now();
    const sink = ctx.metrics;
    const bytesSent = payload ? Buffer.byteLength(payload) : 0;
    const out = new Deferred<LuaMultiReturn>();
    const onOk = (res: LeanResponse): void => {
      const dt = performance.now() - t0;
      if (useJar) cookies.fromRawHeaders(url, res.rawHeaders);
      const head = method === 'HEAD';
      if (sink) sink.request({ name: requestName(opts, url), method, status: res.statusCode, durationMs: dt, failed: res.statusCode < 200 || res.statusCode >= 400, bytesSent: res.wireBytesSent, bytesReceived: res.wireBytesReceived });
      // the shim makes the response table: (status, body, time_ms, raw header block)
      // (LuaMultiReturn.of costs ~1 µs: Array.of on a subclass takes V8's slow path)
      const values = new LuaMultiReturn(4);
      values[0] = res.statusCode;
      values[1] = head ? '' : res.body;
      values[2] = Math.round(dt * 1000) / 1000;
      values[3] = res.rawHeaders;
      out.resolve(values);
    };
    const onErr = (err: Error): void => {
      if (sink) sink.request({ name: requestName(opts, url), method, status: 0, durationMs: performance.now() - t0, failed: true, bytesSent, bytesReceived: 0 });
      const e = err as Error & { code?: string; cause?: Error };
      let reason = errorMessage(err);
      if (!ctx.signal.aborted && (e.code === 'UND_ERR_HEADERS_TIMEOUT' || e.code === 'UND_ERR_BODY_TIMEOUT')) reason = `timeout after ${timeoutMs}ms`;
      else if (e.cause instanceof Error && !reason.includes(e.cause.message)) reason = `${reason}: ${e.cause.message}`;
      out.reject(new Error(`${what} ${url}: ${reason}`));
    };
    // TLS options apply to https origins only, through a dispatcher per set of options
    const tls = origin.charCodeAt(4) === 115 /* https */ && hasTlsOptions(opts) ? tlsOptionsOf(opts, ctx.task, what) : undefined;
    if (tls !== undefined) {
      leanRequest(tlsDispatcher(tls), { origin, path, method, headers, body: payload, signal, headersTimeout: timeoutMs, bodyTimeout: timeoutMs }).then(onOk, onErr);
    } else if (!(rawAllowed() && rawHttpClient().send({ origin, path, method, headers, body: payload, signal, timeoutMs }, onOk, onErr))) {
      leanRequest(globalDispatcher(), { origin, path, method, headers, body: payload, signal, headersTimeout: timeoutMs, bodyTimeout: timeoutMs }).then(onOk, onErr);
    }
    return out;
  }

  return {
    shim: NET_SHIM,
    close: () => {
      grpcCaller?.close();
      sockets?.closeAll();
    },
    exports: {
      grpc: (target: unknown, method: unknown, request: unknown, opts: unknown) => grpc().call(target, method, request, opts),
      request: (method: unknown, url: unknown, body: unknown, opts: unknown) => {
        const m = typeof method === 'string' && KNOWN_METHODS.has(method) ? method : String(method ?? 'GET').toUpperCase();
        const what = whatOf(m);
        if (typeof url !== 'string' || url === '') throw new Error(`${what}: expected a URL string, got ${url === null || url === undefined ? 'nil' : typeof url}`);
        return send(m, url, body, opts, what);
      },
      resolve: (url: unknown) => resolve(String(url)),
      cookies: (url: unknown) => {
        if (url !== undefined && url !== null && typeof url !== 'string') throw new Error('net.cookies: expected a URL string or nothing');
        return cookies.list(typeof url === 'string' ? url : undefined);
      },
      clear_cookies: () => cookies.clear(),
      ws_open: (url: unknown, opts: unknown) => ws().open(url, opts),
      ws_send: (id: unknown, data: unknown) => ws().send(id, data),
      ws_receive: (id: unknown, timeout: unknown) => ws().receive(id, timeout),
      ws_close: (id: unknown) => ws().close(id),
      parse_headers: (raw: unknown) => parseHeaderBlock(typeof raw === 'string' ? raw : ''),
      status_text: (status: unknown) => STATUS_CODES[Number(status)] ?? '',
      wait_http: async (url: unknown, optsIn: unknown) => {
        if (typeof url !== 'string') throw new Error('net.wait_http: expected a URL string');
        const opts = luaOptions(optsIn, 'net.wait_http');
        const want = typeof opts.status === 'number' ? opts.status : 200;
        const timeoutMs = luaDurationMs(opts.timeout, 'net.wait_http timeout') ?? 30_000;
        const intervalMs = luaDurationMs(opts.interval, 'net.wait_http interval') ?? 200;
        const deadline = Date.now() + timeoutMs;
        let last = 'no attempt';
        for (let attempt = 0; attempt < 100_000; attempt++) {
          const left = deadline - Date.now();
          if (left <= 0) break;
          try {
            const r = await send('GET', url, undefined, { timeout: Math.min(left, 5000) / 1000 }, 'net.wait_http');
            if (r[0] === want) return r;
            last = `status ${String(r[0])}`;
          } catch (err) {
            last = errorMessage(err).replace(/^net\.wait_http \S+: /, '');
          }
          if (ctx.signal.aborted) break;
          await delay(Math.min(intervalMs, Math.max(0, deadline - Date.now())), undefined, { signal: ctx.signal });
        }
        throw new Error(`net.wait_http ${url}: no status ${want} within ${timeoutMs}ms (last: ${last})`);
      },
    },
  };
}
