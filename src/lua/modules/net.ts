import { STATUS_CODES } from 'node:http';
import { setTimeout as delay } from 'node:timers/promises';
import type { Dispatcher } from 'undici';
import { leanRequest, type LeanResponse } from '../vu-http';
import { rawHttpClient } from '../vu-raw-http';
import type { EndpointMap } from '../../backends/backend';
import type { LuaModuleContext, LuaModuleInstance } from './module-types';
import { errorMessage, luaDurationMs, luaOptions } from '../lua-values';
import type { GrpcCaller } from './grpc';

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

export interface NetResponse {
  code: number;
  status: number;
  status_text: string;
  headers: Record<string, string>;
  body: string;
  time_ms: number;
}

/** Lua-side sugar: verbs, response:json(). Runs once per engine. */
const NET_SHIM = String.raw`
local js, h = ...
local decode = h.json.decode
local function json_method(self) return decode(self.body) end
local function wrap(r) r.json = json_method; return r end
local M = {}
function M.request(o)
  if type(o) ~= "table" then h.raise("net.request: expected a table {method=, url=, ...}") end
  return wrap(js.request(o.method or "GET", o.url, o.body, o))
end
function M.get(url, opts) return wrap(js.request("GET", url, nil, opts)) end
function M.head(url, opts) return wrap(js.request("HEAD", url, nil, opts)) end
function M.delete(url, opts) return wrap(js.request("DELETE", url, nil, opts)) end
function M.post(url, body, opts) return wrap(js.request("POST", url, body, opts)) end
function M.put(url, body, opts) return wrap(js.request("PUT", url, body, opts)) end
function M.patch(url, body, opts) return wrap(js.request("PATCH", url, body, opts)) end
function M.wait_http(url, opts) return wrap(js.wait_http(url, opts)) end
M.resolve = js.resolve
M.grpc = js.grpc
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

  async function send(method: string, url: string, body: unknown, optsIn: unknown, what: string): Promise<NetResponse> {
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
    const timeoutMs = opts.timeout === undefined || opts.timeout === null ? DEFAULT_TIMEOUT_MS : (luaDurationMs(opts.timeout, `${what} timeout`) ?? DEFAULT_TIMEOUT_MS);
    // undici's own timeouts: a per-request AbortSignal.any + AbortSignal.timeout costs more than the request under load
    const signal = ctx.signal;
    const t0 = performance.now();
    const sink = ctx.metrics;
    try {
      const res: LeanResponse = await ((rawAllowed() ? rawHttpClient().request({ origin, path, method, headers, body: payload, signal, timeoutMs }) : undefined) ??
        leanRequest(globalDispatcher(), { origin, path, method, headers, body: payload, signal, headersTimeout: timeoutMs, bodyTimeout: timeoutMs }));
      const text = method === 'HEAD' ? '' : res.body;
      const dt = performance.now() - t0;
      if (sink) sink.request({ name: requestName(opts, url), method, status: res.statusCode, durationMs: dt, failed: res.statusCode < 200 || res.statusCode >= 400, bytesSent: payload ? Buffer.byteLength(payload) : 0, bytesReceived: Buffer.byteLength(text) });
      return {
        code: res.statusCode,
        status: res.statusCode,
        status_text: STATUS_CODES[res.statusCode] ?? '',
        // both clients hand back lower-cased names with repeated headers joined
        headers: res.headers,
        body: text,
        time_ms: Math.round(dt * 1000) / 1000,
      };
    } catch (err) {
      if (sink) sink.request({ name: requestName(opts, url), method, status: 0, durationMs: performance.now() - t0, failed: true, bytesSent: payload ? Buffer.byteLength(payload) : 0, bytesReceived: 0 });
      const e = err as Error & { code?: string; cause?: Error };
      let reason = errorMessage(err);
      if (!ctx.signal.aborted && (e.code === 'UND_ERR_HEADERS_TIMEOUT' || e.code === 'UND_ERR_BODY_TIMEOUT')) reason = `timeout after ${timeoutMs}ms`;
      else if (e.cause instanceof Error && !reason.includes(e.cause.message)) reason = `${reason}: ${e.cause.message}`;
      throw new Error(`${what} ${url}: ${reason}`);
    }
  }

  return {
    shim: NET_SHIM,
    close: () => grpcCaller?.close(),
    exports: {
      grpc: (target: unknown, method: unknown, request: unknown, opts: unknown) => grpc().call(target, method, request, opts),
      request: (method: unknown, url: unknown, body: unknown, opts: unknown) => {
        const m = typeof method === 'string' && KNOWN_METHODS.has(method) ? method : String(method ?? 'GET').toUpperCase();
        const what = whatOf(m);
        if (typeof url !== 'string' || url === '') throw new Error(`${what}: expected a URL string, got ${url === null || url === undefined ? 'nil' : typeof url}`);
        return send(m, url, body, opts, what);
      },
      resolve: (url: unknown) => resolve(String(url)),
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
            if (r.code === want) return r;
            last = `status ${r.code}`;
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
