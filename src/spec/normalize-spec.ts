import type { DatabaseSpec, ReadinessSpec, ServiceSpec } from './app-spec';
import { DEFAULT_READY_TIMEOUT_MS, type RawDatabase, type RawReady, type RawService } from './app-spec-schema';
import { findReferences } from './references';

const DEFAULT_DATABASE_PORT = 5432;

/** From what the schema parsed to the AppSpec's shapes (defaults filled, named ports resolved, dependencies implied by references added). */
function normalizeReady(r: RawReady | undefined, ports: Record<string, number>): ReadinessSpec {
  if (!r) return { kind: 'tcp', timeoutMs: DEFAULT_READY_TIMEOUT_MS };
  const port = typeof r.port === 'string' ? ports[r.port] : r.port;
  const withPort = port === undefined ? {} : { port };
  switch (r.kind) {
    case 'http':
      return { kind: 'http', path: r.path ?? '/', timeoutMs: r.timeoutMs, ...withPort };
    case 'tcp':
      return { kind: 'tcp', timeoutMs: r.timeoutMs, ...withPort };
    case 'log':
      return { kind: 'log', pattern: r.pattern ?? '', timeoutMs: r.timeoutMs };
    case 'none':
      return { kind: 'none', timeoutMs: r.timeoutMs };
  }
}

export function normalizeService(s: RawService, names: Set<string>): ServiceSpec {
  const ports: Record<string, number> = {};
  const tlsPorts: string[] = [];
  for (const [k, v] of Object.entries(s.ports ?? {})) {
    if (typeof v === 'number') ports[k] = v;
    else {
      ports[k] = v.port;
      if (v.tls) tlsPorts.push(k);
    }
  }
  const env = s.env ?? s.envVars ?? {};
  const deps = [...(s.depends_on ?? [])];
  const refStrings = [...Object.values(env), ...(s.command ?? [])];
  for (const v of refStrings) for (const ref of findReferences(v)) if (ref.name !== s.name && names.has(ref.name)) deps.push(ref.name);
  const out: ServiceSpec = {
    name: s.name,
    port: s.port,
    ports,
    replicas: s.replicas ?? 1,
    env,
    ready: normalizeReady(s.ready, ports),
    dependsOn: [...new Set(deps)],
  };
  if (s.tls) out.tls = true;
  if (tlsPorts.length) out.tlsPorts = tlsPorts;
  if (s.image !== undefined) out.image = s.image;
  if (s.version !== undefined) out.version = s.version;
  if (s.command !== undefined) out.command = s.command;
  if (s.cwd !== undefined) out.cwd = s.cwd;
  return out;
}

export function normalizeDatabase(d: RawDatabase, initSQLFromFile: string | undefined): DatabaseSpec {
  const out: DatabaseSpec = {
    name: d.name,
    engine: 'postgres',
    port: d.port ?? DEFAULT_DATABASE_PORT,
    credentials: {
      user: d.credentials?.user ?? 'postgres',
      password: d.credentials?.password ?? 'postgres',
      dbname: d.credentials?.dbname ?? d.name,
    },
    ready: { timeoutMs: d.ready?.timeout ?? DEFAULT_READY_TIMEOUT_MS },
  };
  if (d.image !== undefined) out.image = d.image;
  if (d.version !== undefined) out.version = d.version;
  const sql = d.initSQL ?? initSQLFromFile;
  if (sql !== undefined) out.initSQL = sql;
  return out;
}
