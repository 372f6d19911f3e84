import * as fs from 'node:fs';
import type { Dispatcher } from 'undici';
import type { ScenarioTask } from '../run/scenario-types';
import { resolveScenarioFile } from './scenario-files';

/**
 * TLS request options of `net` and `net.grpc`: `insecure=true`, `ca=path`,
 * `cert=path`/`key=path` (client certificate), `server_name=`. Files are
 * read once per worker (load tests pass the same options per request).
 */
export interface TlsOptions {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  insecure: boolean;
  serverName?: string;
  /** identifies the options: one dispatcher / channel per key */
  key_: string;
}

const files = new Map<string, Buffer>();
function readOnce(file: string): Buffer {
  let b = files.get(file);
  if (!b) {
    b = fs.readFileSync(file);
    if (files.size >= 100) files.clear();
    files.set(file, b);
  }
  return b;
}

/** true when a request's options carry any TLS setting (the hot path checks only this) */
export function hasTlsOptions(opts: Record<string, unknown>): boolean {
  return opts.insecure !== undefined || opts.ca !== undefined || opts.cert !== undefined || opts.key !== undefined || opts.server_name !== undefined;
}

export function tlsOptionsOf(opts: Record<string, unknown>, task: Pick<ScenarioTask, 'file' | 'baseDir'>, what: string): TlsOptions | undefined {
  if (!hasTlsOptions(opts)) return undefined;
  const fileOpt = (name: 'ca' | 'cert' | 'key'): { file: string; data: Buffer } | undefined => {
    const v = opts[name];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'string' || v === '') throw new Error(`${what}: ${name} must be a file path (PEM), got ${typeof v}`);
    const file = resolveScenarioFile(task, v, `${what} ${name}`);
    return { file, data: readOnce(file) };
  };
  const ca = fileOpt('ca');
  const cert = fileOpt('cert');
  const key = fileOpt('key');
  if ((cert === undefined) !== (key === undefined)) throw new Error(`${what}: a client certificate needs both cert= and key=`);
  if (opts.insecure !== undefined && opts.insecure !== null && typeof opts.insecure !== 'boolean') throw new Error(`${what}: insecure must be true or false`);
  if (opts.server_name !== undefined && opts.server_name !== null && typeof opts.server_name !== 'string') throw new Error(`${what}: server_name must be a string`);
  const insecure = opts.insecure === true;
  const serverName = typeof opts.server_name === 'string' && opts.server_name !== '' ? opts.server_name : undefined;
  return {
    ...(ca ? { ca: ca.data } : {}),
    ...(cert ? { cert: cert.data } : {}),
    ...(key ? { key: key.data } : {}),
    insecure,
    ...(serverName ? { serverName } : {}),
    key_: JSON.stringify([ca?.file, cert?.file, key?.file, insecure, serverName]),
  };
}

// one keep-alive pool per set of TLS options, shared by every VU of the worker
const agents = new Map<string, Dispatcher>();
export function tlsDispatcher(t: TlsOptions): Dispatcher {
  let a = agents.get(t.key_);
  if (!a) {
    const { Agent } = require('undici') as typeof import('undici');
    a = new Agent({
      connect: {
        rejectUnauthorized: !t.insecure,
        ...(t.ca ? { ca: t.ca } : {}),
        ...(t.cert ? { cert: t.cert, key: t.key } : {}),
        ...(t.serverName ? { servername: t.serverName } : {}),
      },
    });
    agents.set(t.key_, a);
  }
  return a;
}
