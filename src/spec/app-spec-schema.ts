import { z } from 'zod';
import { tryParseDurationMs } from '../util/duration';
import { splitCommand } from './split-command';
import { suggestion } from './did-you-mean';
import { LIMITS, envSizeProblems, formatLimitDuration } from '../util/limits';

/**
 * Zod schemas for the raw topas.yaml (both forms). Scalars are checked by hand
 * inside transforms so every message reads like `expected integer 1-65535, got
 * "80a"`; cross-field rules (names, references, cycles) live in load-app-spec.ts.
 */

/** How a value is shown after `got`. */
export function describeValue(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null (empty)';
  // a long value (a pasted file, binary garbage) is cut: the message names the field anyway
  if (typeof v === 'string') return v.length > 80 ? `${JSON.stringify(v.slice(0, 60)).slice(0, -1)}…" (${v.length} characters)` : JSON.stringify(v);
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (Array.isArray(v)) return 'a list';
  return 'a mapping';
}

type IssueFn = (message: string, path?: (string | number)[]) => void;

/** A field checked by `check`; `issue` may be called several times (all are reported). */
function field<T>(check: (v: unknown, issue: IssueFn) => T) {
  return z.any().transform((v, ctx): T => {
    let bad = false;
    const out = check(v, (message, path) => {
      bad = true;
      ctx.addIssue({ code: 'custom', message, path });
    });
    return bad ? (z.NEVER as T) : out;
  });
}

const REQUIRED = 'required field is missing';

const DNS_LABEL_RE = /^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$/;
const ENV_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;
export const DEFAULT_READY_TIMEOUT_MS = 30_000;

function isMapping(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function checkString(v: unknown, issue: IssueFn): string {
  if (v === undefined) issue(REQUIRED);
  else if (typeof v !== 'string') issue(`expected a string, got ${describeValue(v)}`);
  else if (v.trim() === '') issue('must not be empty');
  return v as string;
}

/** Strings, or numbers/booleans that YAML parsed but the user meant as text (env values, passwords). */
function checkText(v: unknown, issue: IssueFn): string {
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (typeof v !== 'string') {
    issue(v === undefined ? REQUIRED : `expected a string, got ${describeValue(v)}`);
    return '';
  }
  return v;
}

function checkName(v: unknown, issue: IssueFn): string {
  if (v === undefined) issue(REQUIRED);
  else if (typeof v !== 'string' || !DNS_LABEL_RE.test(v)) {
    issue(`expected a name of lowercase letters, digits and "-" (starting with a letter, at most 63 characters), got ${describeValue(v)}`);
  }
  return v as string;
}

function checkPort(v: unknown, issue: IssueFn): number {
  const n = typeof v === 'string' && /^\d+$/.test(v.trim()) ? Number(v) : v;
  if (v === undefined) issue(REQUIRED);
  else if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > 65535) issue(`expected integer 1-65535, got ${describeValue(v)}`);
  return n as number;
}

function checkDurationMs(v: unknown, issue: IssueFn): number {
  const ms = tryParseDurationMs(v);
  if (ms === undefined) issue(`expected a duration like "30s", "500ms" or "2m", got ${describeValue(v)}`);
  else if (ms <= 0) issue(`expected a duration above 0, got ${describeValue(v)}`);
  else if (ms > LIMITS.durationMs) issue(`expected at most ${formatLimitDuration(LIMITS.durationMs)}, got ${describeValue(v)}`);
  return ms as number;
}

function unknownKeys(v: Record<string, unknown>, known: readonly string[], issue: IssueFn): void {
  for (const k of Object.keys(v)) {
    if (!known.includes(k)) issue(`unknown field${suggestion(k, known)}`, [k]);
  }
}

const name = field(checkName);
const text = field(checkString);
const port = field(checkPort);

const version = field((v, issue) => {
  if (typeof v === 'number' && Number.isInteger(v)) return String(v);
  // 1.10 would already have become 1.1: refuse rather than guess.
  if (typeof v === 'number') {
    issue(`expected a string (quote it: "${v}"), got ${v}`);
    return String(v);
  }
  return checkString(v, issue);
});

const replicas = field((v, issue) => {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > LIMITS.replicas) issue(`expected integer 0-${LIMITS.replicas}, got ${describeValue(v)}`);
  return v as number;
});

const command = field((v, issue): string[] => {
  if (typeof v === 'string') {
    const r = splitCommand(v);
    if ('error' in r) issue(`${r.error} in ${JSON.stringify(v)}`);
    else if (r.argv.length === 0) issue('must not be empty');
    else return r.argv;
    return [];
  }
  if (!Array.isArray(v)) {
    issue(`expected a list of arguments or a command string, got ${describeValue(v)}`);
    return [];
  }
  if (v.length === 0) issue('must not be empty');
  return v.map((arg, i) => {
    if (typeof arg === 'number' || typeof arg === 'boolean') return String(arg);
    if (typeof arg !== 'string') issue(`expected a string, got ${describeValue(arg)}`, [i]);
    return arg as string;
  });
});

const env = field((v, issue): Record<string, string> => {
  const out: Record<string, string> = {};
  if (v === null) return out;
  if (!isMapping(v)) {
    issue(`expected a mapping of NAME: value, got ${describeValue(v)}`);
    return out;
  }
  for (const [k, val] of Object.entries(v)) {
    if (!ENV_NAME_RE.test(k)) issue(`expected an environment variable name (letters, digits, "_"), got ${JSON.stringify(k)}`, [k]);
    out[k] = checkText(val, (m) => issue(m, [k]));
  }
  for (const p of envSizeProblems(out)) issue(p.message, p.name === undefined ? undefined : [p.name]);
  return out;
});

/** a named port: a number, or `{ port: N, tls: true }` for a port that serves TLS */
export type RawPort = number | { port: number; tls: boolean };

const portMap = field((v, issue): Record<string, RawPort> => {
  const out: Record<string, RawPort> = {};
  if (v === null) return out;
  if (!isMapping(v)) {
    issue(`expected a mapping of name: port, got ${describeValue(v)}`);
    return out;
  }
  for (const [k, val] of Object.entries(v)) {
    if (!DNS_LABEL_RE.test(k)) issue(`expected a port name of lowercase letters, digits and "-", got ${JSON.stringify(k)}`, [k]);
    if (isMapping(val)) {
      unknownKeys(val, ['port', 'tls'] as const, (m, p) => issue(m, [k, ...(p ?? [])]));
      if (val.tls !== undefined && typeof val.tls !== 'boolean') issue(`expected true or false, got ${describeValue(val.tls)}`, [k, 'tls']);
      out[k] = { port: checkPort(val.port, (m) => issue(m, [k, 'port'])), tls: val.tls === true };
    } else {
      out[k] = checkPort(val, (m) => issue(m, [k]));
    }
  }
  return out;
});

const bool = field((v, issue): boolean => {
  if (typeof v !== 'boolean') issue(`expected true or false, got ${describeValue(v)}`);
  return v === true;
});

const stringList = field((v, issue): string[] => {
  if (v === null) return [];
  if (typeof v === 'string') return [v];
  if (!Array.isArray(v)) {
    issue(`expected a list of names, got ${describeValue(v)}`);
    return [];
  }
  return v.map((item, i) => checkString(item, (m) => issue(m, [i])));
});

export interface RawReady {
  kind: 'http' | 'tcp' | 'log' | 'none';
  timeoutMs: number;
  path?: string;
  pattern?: string;
  /** a number, or the name of one of the service's `ports` */
  port?: number | string;
}

const READY_KEYS = ['http', 'tcp', 'log', 'none', 'timeout', 'port'] as const;

const serviceReady = field((v, issue): RawReady => {
  if (v === false) return { kind: 'none', timeoutMs: DEFAULT_READY_TIMEOUT_MS };
  if (!isMapping(v)) {
    issue(`expected a mapping like { http: /healthz }, { tcp: true } or { log: "listening" }, got ${describeValue(v)}`);
    return { kind: 'none', timeoutMs: 0 };
  }
  unknownKeys(v, READY_KEYS, issue);
  const kinds = (['http', 'tcp', 'log', 'none'] as const).filter((k) => v[k] !== undefined);
  if (kinds.length > 1) issue(`choose one of http, tcp, log, none; got ${kinds.join(' and ')}`);
  const kind = kinds[0] ?? 'tcp';
  const out: RawReady = { kind, timeoutMs: DEFAULT_READY_TIMEOUT_MS };
  if (v.timeout !== undefined) out.timeoutMs = checkDurationMs(v.timeout, (m) => issue(m, ['timeout']));
  if (kind === 'http') {
    const p = v.http;
    if (typeof p !== 'string' || !p.startsWith('/')) issue(`expected a path starting with "/", got ${describeValue(p)}`, ['http']);
    out.path = p as string;
  } else if (kind === 'tcp' && v.tcp !== undefined && v.tcp !== true) {
    issue(`expected true, got ${describeValue(v.tcp)}`, ['tcp']);
  } else if (kind === 'log') {
    out.pattern = checkString(v.log, (m) => issue(m, ['log']));
  } else if (kind === 'none' && v.none !== true) {
    issue(`expected true, got ${describeValue(v.none)}`, ['none']);
  }
  if (v.port !== undefined) {
    if (kind !== 'http' && kind !== 'tcp') issue('port applies to http and tcp readiness only', ['port']);
    else if (typeof v.port === 'string' && !/^\d+$/.test(v.port)) out.port = v.port;
    else out.port = checkPort(v.port, (m) => issue(m, ['port']));
  }
  return out;
});

const engine = field((v, issue): 'postgres' => {
  if (v !== 'postgres') issue(`expected "postgres" (the only engine supported), got ${describeValue(v)}`);
  return 'postgres';
});

const timeoutOnly = z.strictObject({ timeout: field(checkDurationMs).optional() });

const password = field((v, issue) => {
  const s = checkText(v, issue);
  if (s === '') issue('must not be empty');
  return s;
});

export const serviceSchema = z.strictObject({
  name,
  image: text.optional(),
  version: version.optional(),
  command: command.optional(),
  cwd: text.optional(),
  port,
  ports: portMap.optional(),
  tls: bool.optional(),
  replicas: replicas.optional(),
  env: env.optional(),
  envVars: env.optional(),
  ready: serviceReady.optional(),
  depends_on: stringList.optional(),
});

export const databaseSchema = z.strictObject({
  name,
  engine: engine.optional(),
  image: text.optional(),
  version: version.optional(),
  port: port.optional(),
  credentials: z
    .strictObject({ user: text.optional(), password: password.optional(), dbname: text.optional() })
    .optional(),
  initSQL: field(checkText).optional(),
  initSQLFile: text.optional(),
  ready: timeoutOnly.optional(),
});

const body = {
  services: z.array(serviceSchema).nullish(),
  databases: z.array(databaseSchema).nullish(),
  /** variables for scenarios: `env()` reads them after --env and before the process environment */
  env: env.optional(),
};

export const plainAppSchema = z.strictObject({ name: name.optional(), ...body });

const stringMap = z.record(z.string(), z.string());

const API_VERSION = 'topas.dev/v1';

export const kindAppSchema = z.strictObject({
  apiVersion: field((v, issue) => {
    if (v !== API_VERSION) issue(`expected "${API_VERSION}", got ${describeValue(v)}`);
    return v as string;
  }),
  kind: field((v, issue) => {
    if (v !== 'App') issue(`expected "App", got ${describeValue(v)}`);
    return v as string;
  }),
  metadata: z.strictObject({ name, labels: stringMap.optional(), annotations: stringMap.optional() }),
  spec: z.strictObject(body),
});

export type RawService = z.output<typeof serviceSchema>;
export type RawDatabase = z.output<typeof databaseSchema>;

interface ZodDefLike {
  type: string;
  shape?: Record<string, unknown>;
  element?: unknown;
  innerType?: unknown;
  in?: unknown;
}

function defOf(schema: unknown): ZodDefLike | undefined {
  return (schema as { _zod?: { def?: ZodDefLike } } | undefined)?._zod?.def;
}

function unwrap(schema: unknown): unknown {
  for (let i = 0; i < 10; i++) {
    const def = defOf(schema);
    if (!def) return schema;
    if (def.innerType !== undefined) schema = def.innerType;
    else if (def.type === 'pipe') schema = def.in;
    else return schema;
  }
  return schema;
}

/** The field names an object schema accepts at `path` (for did-you-mean on unknown fields). */
export function knownKeysAt(root: unknown, path: readonly PropertyKey[]): string[] {
  let s = unwrap(root);
  for (const seg of path) {
    const def = defOf(s);
    if (def?.type === 'object' && def.shape && typeof seg === 'string') s = unwrap(def.shape[seg]);
    else if (def?.type === 'array') s = unwrap(def.element);
    else return [];
  }
  const def = defOf(s);
  return def?.type === 'object' && def.shape ? Object.keys(def.shape) : [];
}
