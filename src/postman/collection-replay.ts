import * as fs from 'node:fs';
import { STATUS_CODES } from 'node:http';
import { request as undiciRequest } from 'undici';
import { collectionFolders, readPostmanJson } from './newman-run';

/*
 * Postman collections under load. newman spends ~100 ms of CPU per run
 * (runtime, sandbox set-up), far too much for hundreds of iterations a
 * second, so a load iteration replays the collection itself: the requests
 * compiled once per worker, variables substituted by the Postman SDK,
 * requests sent with undici (service names resolved like net's), and the
 * pre-request and test scripts run in one long-lived Postman sandbox.
 */

/* eslint-disable @typescript-eslint/no-require-imports */
type Sdk = any;
let sdkModule: Sdk;
const sdk = (): Sdk => (sdkModule ??= require('postman-collection'));

interface CompiledRequest {
  name: string;
  /** the request as JSON, variables unresolved */
  request: object;
  /** the auth in effect (the request's, else the nearest folder's or the collection's), variables unresolved */
  auth?: { type: string; params: Record<string, string> };
  prerequest: string[];
  test: string[];
}

export interface CompiledCollection {
  name: string;
  requests: CompiledRequest[];
  /** collection variables, then the environment (later wins), then --vars */
  variables: Record<string, string>;
}

export interface ReplayOptions {
  collection: string;
  environment?: string;
  folder?: string;
  vars?: Record<string, string>;
}

const compiledCache = new Map<string, { stamp: string; compiled: CompiledCollection }>();

function stampOf(files: (string | undefined)[]): string {
  return files.map((f) => (f ? `${f}@${fs.statSync(f).mtimeMs}` : '-')).join('|');
}

function scriptsOf(node: Sdk, listen: string): string[] {
  const out: string[] = [];
  node.events?.each?.((ev: Sdk) => {
    if (ev.listen === listen && !ev.disabled && ev.script?.exec?.length) out.push(ev.script.exec.join('\n'));
  });
  return out;
}

/** Compiles a collection (or one folder of it) once per worker and file version. */
export function compileCollection(opts: ReplayOptions): CompiledCollection {
  const key = JSON.stringify([opts.collection, opts.environment, opts.folder, opts.vars]);
  const stamp = stampOf([opts.collection, opts.environment]);
  const hit = compiledCache.get(key);
  if (hit && hit.stamp === stamp) return hit.compiled;
  const { Collection } = sdk();
  const json = readPostmanJson(opts.collection, 'collection');
  const collection = new Collection(json);
  let root: Sdk = collection;
  if (opts.folder) {
    root = collection.oneDeep(opts.folder);
    if (!root) {
      const known = collectionFolders(json);
      throw new Error(`no folder or request named "${opts.folder}" in the collection${known.length ? ` (folders: ${known.join(', ')})` : ''}`);
    }
  }
  const requests: CompiledRequest[] = [];
  const visit = (item: Sdk) => {
    // scripts run from the collection down to the request, as in Postman
    const chain: Sdk[] = [];
    for (let n = item; n; n = typeof n.parent === 'function' ? n.parent() : undefined) chain.unshift(n);
    const auth = item.getAuth?.();
    requests.push({
      name: item.name,
      request: item.request.toJSON(),
      ...(auth && auth.type !== 'noauth' ? { auth: { type: String(auth.type), params: auth.parameters().toObject() as Record<string, string> } } : {}),
      prerequest: chain.flatMap((n) => scriptsOf(n, 'prerequest')),
      test: chain.flatMap((n) => scriptsOf(n, 'test')),
    });
  };
  if (root.request) visit(root);
  else root.forEachItem(visit);
  const variables: Record<string, string> = {};
  for (const v of (json as { variable?: { key: string; value: unknown; disabled?: boolean }[] }).variable ?? []) if (!v.disabled) variables[v.key] = String(v.value ?? '');
  if (opts.environment) {
    const env = readPostmanJson(opts.environment, 'environment') as { values?: { key: string; value: unknown; enabled?: boolean }[] };
    for (const v of env.values ?? []) if (v.enabled !== false) variables[v.key] = String(v.value ?? '');
  }
  Object.assign(variables, opts.vars ?? {});
  const compiled = { name: collection.name as string, requests, variables };
  compiledCache.set(key, { stamp, compiled });
  return compiled;
}

// ------------------------------------------------------------------ sandbox

interface SandboxContext {
  execute(target: unknown, options: object, cb: (err: Error | null, result: any) => void): void;
  on(ev: string, fn: (...args: any[]) => void): void;
  removeAllListeners(ev: string): void;
}
let sandboxPromise: Promise<SandboxContext> | undefined;
function sandbox(): Promise<SandboxContext> {
  sandboxPromise ??= new Promise<SandboxContext>((resolve, reject) => {
    const Sandbox = require('postman-sandbox') as { createContext(opts: object, cb: (err: Error | null, ctx: SandboxContext) => void): void };
    Sandbox.createContext({ timeout: 30_000 }, (err, ctx) => (err ? reject(err) : resolve(ctx)));
  });
  sandboxPromise.catch(() => (sandboxPromise = undefined));
  return sandboxPromise;
}

let executionSeq = 0;

export interface ScriptOutcome {
  assertions: { name: string; passed: boolean; message?: string }[];
  error?: string;
}

/** Runs one script; `vars` (pm.variables / environment / collection, flattened) is updated in place. */
async function runScript(listen: 'prerequest' | 'test', code: string, request: Sdk, response: Sdk | undefined, vars: Record<string, string>): Promise<ScriptOutcome> {
  const { Event, VariableScope } = sdk();
  const ctx = await sandbox();
  const id = `topas-${process.pid}-${++executionSeq}`;
  const assertions: ScriptOutcome['assertions'] = [];
  ctx.on(`execution.assertion.${id}`, (_cursor: unknown, list: { name: string; passed: boolean; skipped?: boolean; error?: { message?: string } }[]) => {
    for (const a of list) assertions.push({ name: a.name, passed: a.passed || !!a.skipped, ...(a.passed || a.skipped ? {} : { message: a.error?.message ?? 'failed' }) });
  });
  const scope = () => new VariableScope({ values: Object.entries(vars).map(([key, value]) => ({ key, value })) });
  const context = { _variables: scope(), environment: scope(), collectionVariables: scope(), globals: new VariableScope(), request, ...(response ? { response } : {}) };
  try {
    const result = await new Promise<any>((resolve, reject) => {
      ctx.execute(new Event({ listen, script: { exec: code.split('\n') } }), { id, timeout: 30_000, context, cursor: {} }, (err, res) => (err ? reject(err) : resolve(res)));
    });
    // scripts set pm.variables / pm.environment / pm.collectionVariables; all of them feed later {{x}}
    for (const scopeName of ['collectionVariables', 'environment', '_variables']) {
      const values = result?.[scopeName]?.values as { key: string; value: unknown }[] | undefined;
      for (const v of values ?? []) vars[v.key] = String(v.value ?? '');
    }
    return { assertions };
  } catch (err) {
    return { assertions, error: `${listen} script: ${(err as Error).message}` };
  } finally {
    ctx.removeAllListeners(`execution.assertion.${id}`);
  }
}

// ------------------------------------------------------------------ replay

export interface ReplayedRequest {
  name: string;
  method: string;
  url: string;
  code: number;
  timeMs: number;
  error?: string;
  assertions: { name: string; passed: boolean; message?: string }[];
  bytesSent: number;
  bytesReceived: number;
}

/** The auth types a suite most often uses; others need newman (`postman.run`). Returns the URL (api keys may go in the query). */
function applyAuth(auth: { type: string; params: Record<string, string> }, headers: Record<string, string>, url: string): string {
  const p = auth.params;
  switch (auth.type) {
    case 'bearer':
      headers.authorization ??= `Bearer ${p.token ?? ''}`;
      return url;
    case 'basic':
      headers.authorization ??= `Basic ${Buffer.from(`${p.username ?? ''}:${p.password ?? ''}`).toString('base64')}`;
      return url;
    case 'apikey': {
      if (p.in === 'query') {
        const u = new URL(url);
        u.searchParams.append(p.key ?? '', p.value ?? '');
        return u.toString();
      }
      headers[String(p.key ?? '').toLowerCase()] ??= p.value ?? '';
      return url;
    }
    default:
      throw new Error(`auth type "${auth.type}" is not supported when a collection runs under load (bearer, basic and apikey are)`);
  }
}

function bodyOf(req: Sdk): string | undefined {
  const body = req.body;
  if (!body || body.disabled) return undefined;
  switch (body.mode) {
    case 'raw':
      return body.raw ?? '';
    case 'urlencoded': {
      const p = new URLSearchParams();
      body.urlencoded?.each?.((kv: Sdk) => {
        if (!kv.disabled) p.append(kv.key, kv.value ?? '');
      });
      return p.toString();
    }
    case 'graphql':
      return JSON.stringify({ query: body.graphql?.query ?? '', variables: body.graphql?.variables ? JSON.parse(body.graphql.variables) : undefined });
    default:
      throw new Error(`body mode "${body.mode}" is not supported when a collection runs under load (raw, urlencoded and graphql are)`);
  }
}

/**
 * One iteration: every request of the compiled collection in order, each
 * with its pre-request scripts, the request, then its tests. Never throws
 * for a failed request or test (they are in the result).
 */
export async function replayCollection(c: CompiledCollection, resolveUrl: (url: string) => string, signal: AbortSignal, timeoutMs = 60_000): Promise<ReplayedRequest[]> {
  const { Property, Request, Response } = sdk();
  const vars: Record<string, string> = { ...c.variables };
  const out: ReplayedRequest[] = [];
  for (const r of c.requests) {
    if (signal.aborted) break;
    const assertions: ReplayedRequest['assertions'] = [];
    const errors: string[] = [];
    for (const code of r.prerequest) {
      const o = await runScript('prerequest', code, new Request(Property.replaceSubstitutionsIn(structuredClone(r.request), [vars])), undefined, vars);
      assertions.push(...o.assertions);
      if (o.error) errors.push(o.error);
    }
    const req = new Request(Property.replaceSubstitutionsIn(structuredClone(r.request), [vars]));
    const method = String(req.method ?? 'GET').toUpperCase();
    const url = req.url.toString();
    const headers: Record<string, string> = {};
    req.headers?.each?.((h: Sdk) => {
      if (!h.disabled) headers[String(h.key).toLowerCase()] = String(h.value ?? '');
    });
    let payload: string | undefined;
    let target = /^[a-z]+:\/\//i.test(url) ? url : `http://${url}`;
    let authError: Error | undefined;
    try {
      if (r.auth) target = applyAuth(Property.replaceSubstitutionsIn(structuredClone(r.auth), [vars]), headers, target);
    } catch (err) {
      authError = err as Error;
    }
    let code = 0;
    let text = '';
    let resHeaders: { key: string; value: string }[] = [];
    const t0 = performance.now();
    let timeMs = 0;
    try {
      if (authError) throw authError;
      payload = bodyOf(req);
      const res = await undiciRequest(resolveUrl(target), { method: method as 'GET', headers, body: payload, signal: AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]) });
      text = method === 'HEAD' ? '' : await res.body.text();
      code = res.statusCode;
      resHeaders = Object.entries(res.headers).flatMap(([key, v]) => (Array.isArray(v) ? v.map((value) => ({ key, value })) : v === undefined ? [] : [{ key, value: String(v) }]));
    } catch (err) {
      errors.push(`${method} ${url}: ${(err as Error).message}`);
    }
    timeMs = performance.now() - t0;
    if (code !== 0) {
      const response = new Response({ code, status: STATUS_CODES[code] ?? '', header: resHeaders, body: text, responseTime: Math.round(timeMs) });
      for (const script of r.test) {
        const o = await runScript('test', script, req, response, vars);
        assertions.push(...o.assertions);
        if (o.error) errors.push(o.error);
      }
    }
    out.push({
      name: r.name,
      method,
      url,
      code,
      timeMs,
      ...(errors.length ? { error: errors.join('; ') } : {}),
      assertions,
      bytesSent: payload ? Buffer.byteLength(payload) : 0,
      bytesReceived: Buffer.byteLength(text),
    });
  }
  return out;
}
