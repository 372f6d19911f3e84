import * as fs from 'node:fs';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import protobuf from 'protobufjs';
import type { EndpointMap } from '../../backends/backend';
import { resolveScenarioFile } from '../scenario-files';
import type { LuaModuleContext } from './module-types';
import { errorMessage, luaDurationMs, luaOptions } from '../lua-values';
import { tlsOptionsOf, type TlsOptions } from '../net-tls';

const DEFAULT_TIMEOUT_MS = 60_000;
const REFLECTION_TIMEOUT_MS = 10_000;
/** reflection answers are reused this long: load tests call the same method thousands of times */
const REFLECTION_CACHE_MS = 30_000;
const MAX_STREAM_MESSAGES = 100_000;
const MAX_REFLECTED_FILES = 500;

/**
 * The same options for .proto files and reflected descriptors, so both paths
 * hand Lua the same table: field names as written, every field present,
 * enums by name, 64-bit integers as numbers (what a Lua script compares with).
 */
const LOADER_OPTIONS: protoLoader.Options = { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true };

export { resolveScenarioFile } from '../scenario-files';

// ------------------------------------------------------------------ reflection

// grpc.reflection.v1 (and v1alpha: same messages); inline so a bundled binary needs no .proto on disk
const REFLECTION_PROTO = `
syntax = "proto3";
package grpc.reflection.v1;
message ServerReflectionRequest {
  string host = 1;
  oneof message_request {
    string file_by_filename = 3;
    string file_containing_symbol = 4;
    string all_extension_numbers_of_type = 6;
    string list_services = 7;
  }
}
message FileDescriptorResponse { repeated bytes file_descriptor_proto = 1; }
message ServiceResponse { string name = 1; }
message ListServiceResponse { repeated ServiceResponse service = 1; }
message ErrorResponse { int32 error_code = 1; string error_message = 2; }
message ServerReflectionResponse {
  string valid_host = 1;
  ServerReflectionRequest original_request = 2;
  oneof message_response {
    FileDescriptorResponse file_descriptor_response = 4;
    ListServiceResponse list_services_response = 6;
    ErrorResponse error_response = 7;
  }
}
`;

let reflectionTypes: { req: protobuf.Type; res: protobuf.Type; fileProto: protobuf.Type } | undefined;
function reflectionMessages(): NonNullable<typeof reflectionTypes> {
  if (!reflectionTypes) {
    const root = protobuf.parse(REFLECTION_PROTO, { keepCase: true }).root;
    // the descriptor extension registers google.protobuf.FileDescriptorProto on protobufjs
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const descriptor = require('protobufjs/ext/descriptor') as { FileDescriptorProto: protobuf.Type };
    reflectionTypes = {
      req: root.lookupType('grpc.reflection.v1.ServerReflectionRequest'),
      res: root.lookupType('grpc.reflection.v1.ServerReflectionResponse'),
      fileProto: descriptor.FileDescriptorProto,
    };
  }
  return reflectionTypes;
}

interface ReflectionAnswer {
  file_descriptor_response?: { file_descriptor_proto: Uint8Array[] };
  list_services_response?: { service: { name: string }[] };
  error_response?: { error_code: number; error_message: string };
}

class StatusError extends Error {
  constructor(
    readonly code: grpc.status,
    readonly details: string,
  ) {
    super(`${statusName(code)} (${code}): ${details}`);
  }
}

export function statusName(code: number): string {
  return (grpc.status as unknown as Record<number, string>)[code] ?? `status ${code}`;
}

/**
 * Asks the server for the files that define `symbol` (and the files those
 * import) over one reflection stream; v1 first, then v1alpha for older servers.
 */
async function reflectFiles(client: grpc.Client, symbol: string, signal: AbortSignal, deadlineMs: number): Promise<Buffer[]> {
  try {
    return await reflectFilesWith(client, 'grpc.reflection.v1.ServerReflection', symbol, signal, deadlineMs);
  } catch (err) {
    if (err instanceof StatusError && err.code === grpc.status.UNIMPLEMENTED) {
      return reflectFilesWith(client, 'grpc.reflection.v1alpha.ServerReflection', symbol, signal, deadlineMs);
    }
    throw err;
  }
}

function reflectFilesWith(client: grpc.Client, service: string, symbol: string, signal: AbortSignal, deadlineMs: number): Promise<Buffer[]> {
  const { req, res, fileProto } = reflectionMessages();
  return new Promise<Buffer[]>((resolve, reject) => {
    const call = client.makeBidiStreamRequest(
      `/${service}/ServerReflectionInfo`,
      (v: object) => Buffer.from(req.encode(req.fromObject(v)).finish()),
      (b: Buffer) => res.toObject(res.decode(b), { defaults: false, arrays: true }) as ReflectionAnswer,
      new grpc.Metadata(),
      { deadline: deadlineMs },
    );
    const files = new Map<string, Buffer>();
    const asked = new Set<string>();
    let outstanding = 0;
    let done = false;
    const finish = (err?: Error) => {
      if (done) return;
      done = true;
      signal.removeEventListener('abort', onAbort);
      if (err) {
        call.cancel();
        reject(err);
      } else {
        call.end();
        resolve([...files.values()]);
      }
    };
    const onAbort = () => finish(new Error('cancelled'));
    signal.addEventListener('abort', onAbort, { once: true });
    const ask = (msg: Record<string, string>) => {
      outstanding++;
      call.write(msg);
    };
    call.on('data', (answer: ReflectionAnswer) => {
      outstanding--;
      if (answer.error_response) {
        const e = answer.error_response;
        finish(new StatusError(e.error_code, `reflection: ${e.error_message || `cannot resolve ${symbol}`}`));
        return;
      }
      for (const bytes of answer.file_descriptor_response?.file_descriptor_proto ?? []) {
        const fd = fileProto.decode(bytes) as unknown as { name: string; dependency?: string[] };
        if (files.has(fd.name)) continue;
        files.set(fd.name, Buffer.from(bytes));
        asked.add(fd.name);
        if (files.size > MAX_REFLECTED_FILES) return finish(new Error(`reflection: more than ${MAX_REFLECTED_FILES} files`));
        // servers need not send imports along; ask for the ones still missing
        for (const dep of fd.dependency ?? []) {
          if (!asked.has(dep)) {
            asked.add(dep);
            ask({ file_by_filename: dep });
          }
        }
      }
      if (outstanding === 0) finish();
    });
    call.on('error', (err: grpc.ServiceError) => finish(new StatusError(err.code ?? grpc.status.UNKNOWN, (err.details || err.message).replace(/\s*Resolution note:\s*$/, ''))));
    call.on('end', () => finish(outstanding === 0 ? undefined : new Error('reflection: the server closed the stream early')));
    ask({ file_containing_symbol: symbol });
  });
}

/** A FileDescriptorSet is `repeated FileDescriptorProto file = 1`: the raw files, each length-delimited. */
function fileDescriptorSet(files: Buffer[]): Buffer {
  const w = protobuf.Writer.create();
  for (const f of files) w.uint32(10).bytes(f);
  return Buffer.from(w.finish());
}

// ------------------------------------------------------------------ descriptors

type MethodDef = grpc.MethodDefinition<object, object>;

const protoCache = new Map<string, { mtimeMs: number; def: protoLoader.PackageDefinition }>();
function loadProtoFile(file: string): protoLoader.PackageDefinition {
  const st = fs.statSync(file);
  const hit = protoCache.get(file);
  if (hit && hit.mtimeMs === st.mtimeMs) return hit.def;
  const def = protoLoader.loadSync(file, { ...LOADER_OPTIONS, includeDirs: [path.dirname(file)] });
  protoCache.set(file, { mtimeMs: st.mtimeMs, def });
  return def;
}

const reflectionCache = new Map<string, { atMs: number; def: Promise<protoLoader.PackageDefinition> }>();

/** Services of a package definition are the entries whose values are method definitions (messages carry `format`). */
function isService(v: unknown): v is Record<string, MethodDef> {
  return typeof v === 'object' && v !== null && !('format' in v) && Object.values(v).some((m) => typeof (m as MethodDef | undefined)?.path === 'string');
}

function findMethod(def: protoLoader.PackageDefinition, service: string, method: string, source: string): MethodDef {
  const svc = def[service];
  if (!isService(svc)) {
    const services = Object.keys(def).filter((k) => isService(def[k]));
    throw new StatusError(grpc.status.UNIMPLEMENTED, `unknown service ${service} in ${source}${services.length ? ` (services: ${services.join(', ')})` : ''}`);
  }
  const m = svc[method];
  if (!m) throw new StatusError(grpc.status.UNIMPLEMENTED, `unknown method ${method} of ${service} in ${source} (methods: ${Object.keys(svc).join(', ')})`);
  return m;
}

// ------------------------------------------------------------------ targets

/**
 * `api`, `api:grpc` (a named port) or `grpc://api` name a service: its gRPC
 * endpoint (the `grpc` port, else its only extra port), round-robin over
 * replicas. Anything else is a host:port.
 */
export function createGrpcTargetResolver(endpoints: () => EndpointMap): (target: string) => { address: string; label: string; tls: boolean } {
  const next = new Map<string, number>();
  return (raw: string) => {
    const bare = raw.replace(/^(grpcs?|https?|dns):\/{0,3}/, '').replace(/\/+$/, '');
    // https:// and grpcs:// ask for TLS (sut.endpoint says https:// for a port marked tls: true)
    const schemeTls = /^(grpcs|https):/.test(raw);
    const m = /^([^:/]+)(?::([^:/]+))?$/.exec(bare);
    const svc = m ? endpoints()[m[1]] : undefined;
    if (svc && svc.kind === 'database') throw new Error(`"${m?.[1]}" is a database of the app, not a service`);
    if (!m || !svc || svc.kind !== 'service') {
      if (!/:\d+$/.test(bare)) throw new Error(`"${raw}" is neither a service of the app nor host:port`);
      return { address: bare, label: raw, tls: schemeTls };
    }
    const name = m[1];
    const ports = Object.keys(svc.extra);
    const portName = m[2] && svc.extra[m[2]] ? m[2] : svc.extra.grpc ? 'grpc' : ports.length === 1 ? ports[0] : undefined;
    if (!portName) {
      throw new Error(
        ports.length === 0
          ? `service "${name}" has no gRPC port (declare one in the app spec: ports: {grpc: N})`
          : `service "${name}" has several ports (${ports.join(', ')}); name one: "${name}:${ports[0]}"`,
      );
    }
    const addrs = svc.extra[portName];
    if (!addrs || addrs.length === 0) throw new Error(`service "${name}" has no ready ${portName} endpoint`);
    const key = `${name}:${portName}`;
    const i = next.get(key) ?? 0;
    next.set(key, i + 1);
    return { address: addrs[i % addrs.length], label: name, tls: schemeTls || (svc.tlsPorts?.includes(portName) ?? false) };
  };
}

// ------------------------------------------------------------------ calls

function metadataFrom(v: unknown, what: string): grpc.Metadata {
  const md = new grpc.Metadata();
  for (const [k, val] of Object.entries(luaOptions(v, `${what} metadata`))) {
    const values = Array.isArray(val) ? val : [val];
    for (const x of values) if (x !== undefined && x !== null) md.add(k.toLowerCase(), String(x));
  }
  return md;
}

/** The messages of a client- or bidi-streaming call: a list of message tables. */
function requestList(v: unknown, what: string): object[] {
  if (v === undefined || v === null) return [];
  // an empty Lua table is no message at all
  if (typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length === 0) return [];
  if (!Array.isArray(v)) throw new Error(`${what}: a streaming method takes a list of messages ({ {...}, {...} }), got ${typeof v === 'object' ? 'a table of fields' : typeof v}`);
  if (v.length > MAX_STREAM_MESSAGES) throw new Error(`${what}: more than ${MAX_STREAM_MESSAGES} messages`);
  return v.map((m, i) => requestObject(m, `${what} message ${i + 1}`));
}

/** wasmoon hands an empty Lua table over as an empty array; a message wants an object. */
function requestObject(v: unknown, what: string): object {
  if (v === undefined || v === null) return {};
  if (Array.isArray(v) && v.length === 0) return {};
  if (typeof v !== 'object' || Array.isArray(v)) throw new Error(`${what}: the request must be a table of fields, got ${Array.isArray(v) ? 'a list' : typeof v}`);
  return v;
}

export interface GrpcCaller {
  /** `net.grpc(target, "pkg.Service/Method", request [, opts])` */
  call(target: unknown, method: unknown, request: unknown, opts: unknown): Promise<unknown>;
  close(): void;
}

export function createGrpcCaller(ctx: Pick<LuaModuleContext, 'endpoints' | 'signal' | 'task' | 'metrics'>): GrpcCaller {
  const resolve = createGrpcTargetResolver(ctx.endpoints);
  const clients = new Map<string, grpc.Client>();

  const clientFor = (address: string, tls: TlsOptions | undefined, useTls: boolean): grpc.Client => {
    const key = useTls ? `${address}|tls|${tls?.key_ ?? ''}` : address;
    let c = clients.get(key);
    if (!c) {
      let creds = grpc.credentials.createInsecure();
      const options: grpc.ChannelOptions = {};
      if (useTls) {
        creds = grpc.credentials.createSsl(tls?.ca ?? null, tls?.key ?? null, tls?.cert ?? null, tls?.insecure ? { rejectUnauthorized: false } : {});
        if (tls?.serverName) {
          options['grpc.ssl_target_name_override'] = tls.serverName;
          options['grpc.default_authority'] = tls.serverName;
        }
      }
      c = new grpc.Client(address, creds, options);
      clients.set(key, c);
    }
    return c;
  };

  async function reflected(client: grpc.Client, address: string, service: string, deadlineMs: number): Promise<protoLoader.PackageDefinition> {
    const key = `${address}|${service}`;
    const hit = reflectionCache.get(key);
    if (hit && Date.now() - hit.atMs < REFLECTION_CACHE_MS) return hit.def;
    const def = reflectFiles(client, service, ctx.signal, Math.min(deadlineMs, Date.now() + REFLECTION_TIMEOUT_MS))
      .catch((err: unknown) => {
        if (!(err instanceof StatusError)) throw err;
        // what a call to an unknown service gets from the server itself
        if (err.code === grpc.status.NOT_FOUND) throw new StatusError(grpc.status.UNIMPLEMENTED, `unknown service ${service} (the server's reflection does not know it)`);
        if (err.code === grpc.status.UNIMPLEMENTED) throw new StatusError(err.code, `the server offers no reflection service; pass {proto="file.proto"} (${err.details})`);
        throw err;
      })
      .then((files) => protoLoader.loadFileDescriptorSetFromBuffer(fileDescriptorSet(files), LOADER_OPTIONS));
    reflectionCache.set(key, { atMs: Date.now(), def });
    def.catch(() => reflectionCache.delete(key));
    return def;
  }

  async function call(targetIn: unknown, methodIn: unknown, requestIn: unknown, optsIn: unknown): Promise<unknown> {
    if (typeof targetIn !== 'string' || targetIn === '') throw new Error('net.grpc: expected a target (service name or host:port) as the first argument');
    if (typeof methodIn !== 'string') throw new Error('net.grpc: expected "pkg.Service/Method" as the second argument');
    const mm = /^\/?([\w.]+)[/.](\w+)$/.exec(methodIn);
    if (!mm) throw new Error(`net.grpc: "${methodIn}" is not of the form "pkg.Service/Method"`);
    const [, service, method] = mm;
    const what = `net.grpc ${targetIn} ${service}/${method}`;
    const opts = luaOptions(optsIn, 'net.grpc');
    const timeoutMs = luaDurationMs(opts.timeout, 'net.grpc timeout') ?? DEFAULT_TIMEOUT_MS;
    // one deadline for the whole call: the reflection round trip counts against `timeout` too
    const deadlineMs = Date.now() + timeoutMs;
    let def: MethodDef;
    let client: grpc.Client;
    try {
      const { address, tls: targetTls } = resolve(targetIn);
      const tls = tlsOptionsOf(opts, ctx.task, 'net.grpc');
      if (opts.tls !== undefined && opts.tls !== null && typeof opts.tls !== 'boolean') throw new Error('tls must be true or false');
      // TLS when asked (tls=true, any TLS option, https:// or grpcs://, a port marked tls: true); tls=false forces plaintext
      const useTls = opts.tls === false ? false : opts.tls === true || tls !== undefined || targetTls;
      client = clientFor(address, tls, useTls);
      if (typeof opts.proto === 'string' && opts.proto !== '') {
        const file = resolveScenarioFile(ctx.task, opts.proto, 'proto');
        def = findMethod(loadProtoFile(file), service, method, path.basename(file));
      } else {
        def = findMethod(await reflected(client, address, service, deadlineMs), service, method, `the server's reflection (${address})`);
      }
      const request = def.requestStream ? requestList(requestIn, 'net.grpc') : requestObject(requestIn, 'net.grpc');
      const t0 = performance.now();
      const name = typeof opts.name === 'string' ? opts.name : `${service}/${method}`;
      try {
        const out = await invoke(client, def, request, metadataFrom(opts.metadata, 'net.grpc'), deadlineMs);
        ctx.metrics?.request({ name, method: 'GRPC', status: grpc.status.OK, durationMs: performance.now() - t0, failed: false, bytesSent: 0, bytesReceived: 0 });
        return out;
      } catch (err) {
        const code = err instanceof StatusError ? err.code : grpc.status.UNKNOWN;
        ctx.metrics?.request({ name, method: 'GRPC', status: code, durationMs: performance.now() - t0, failed: true, bytesSent: 0, bytesReceived: 0 });
        throw err;
      }
    } catch (err) {
      if (ctx.signal.aborted) throw new Error(`${what}: cancelled`);
      throw new Error(`${what}: ${errorMessage(err)}`);
    }
  }

  function invoke(client: grpc.Client, def: MethodDef, request: object, metadata: grpc.Metadata, deadlineMs: number): Promise<unknown> {
    const options: grpc.CallOptions = { deadline: deadlineMs };
    const statusError = (err: grpc.ServiceError) => new StatusError(err.code ?? grpc.status.UNKNOWN, (err.details || err.message).replace(/\s*Resolution note:\s*$/, ''));
    return new Promise((resolveCall, reject) => {
      let cancel: () => void = () => undefined;
      const onAbort = () => cancel();
      ctx.signal.addEventListener('abort', onAbort, { once: true });
      const settle = (err: Error | undefined, value?: unknown) => {
        ctx.signal.removeEventListener('abort', onAbort);
        if (err) reject(err);
        else resolveCall(value);
      };
      const write = (call: grpc.ClientWritableStream<object>, messages: object[]) => {
        for (const m of messages) call.write(m);
        call.end();
      };
      if (def.requestStream && !def.responseStream) {
        const c = client.makeClientStreamRequest(def.path, def.requestSerialize, def.responseDeserialize, metadata, options, (err, value) =>
          settle(err ? statusError(err) : undefined, value),
        );
        cancel = () => c.cancel();
        write(c, request as object[]);
        return;
      }
      if (!def.responseStream) {
        const c = client.makeUnaryRequest(def.path, def.requestSerialize, def.responseDeserialize, request, metadata, options, (err, value) =>
          settle(err ? statusError(err) : undefined, value),
        );
        cancel = () => c.cancel();
        return;
      }
      let stream: grpc.ClientReadableStream<unknown>;
      if (def.requestStream) {
        // bidirectional: every message is sent, then the answers are collected until the server ends
        const bidi = client.makeBidiStreamRequest(def.path, def.requestSerialize, def.responseDeserialize, metadata, options);
        write(bidi, request as object[]);
        stream = bidi;
      } else {
        stream = client.makeServerStreamRequest(def.path, def.requestSerialize, def.responseDeserialize, request, metadata, options);
      }
      cancel = () => stream.cancel();
      const messages: unknown[] = [];
      let failed = false;
      stream.on('data', (m: unknown) => {
        if (messages.length >= MAX_STREAM_MESSAGES) {
          if (!failed) {
            failed = true;
            stream.cancel();
            settle(new Error(`the stream sent more than ${MAX_STREAM_MESSAGES} messages`));
          }
          return;
        }
        messages.push(m);
      });
      stream.on('error', (err: grpc.ServiceError) => {
        if (failed) return;
        failed = true;
        settle(statusError(err));
      });
      stream.on('end', () => {
        if (!failed) settle(undefined, messages);
      });
    });
  }

  return {
    call,
    close() {
      for (const c of clients.values()) c.close();
      clients.clear();
    },
  };
}
