import * as fs from 'node:fs';
import * as path from 'node:path';
import { LineCounter, parseDocument, type Document } from 'yaml';
import type { z } from 'zod';
import { TopasError, type Problem } from '../errors';
import type { AppSpec } from './app-spec';
import { describeValue, kindAppSchema, knownKeysAt, plainAppSchema } from './app-spec-schema';
import { normalizeDatabase, normalizeService } from './normalize-spec';
import { locateInFile, partialAppSpec } from './partial-spec';
import { suggestion } from './did-you-mean';
import { findCycle } from './dependency-graph';
import { DATABASE_REFERENCE_FIELDS, SERVICE_REFERENCE_FIELDS, findReferences, findUnclosedReference } from './references';
import { LIMITS, formatBytes, readTextInput } from '../util/limits';
import { yamlToJs } from '../util/yaml-input';

export interface LoadAppSpecOptions {
  /**
   * Values for `${VAR}` / `${VAR:-default}` placeholders
   * (names without a dot; `${name.field}` is a reference, left for backends).
   * `$${` writes a literal `${`. The command's `Io.env`; none when left out
   * (the loader never reads the process's environment itself).
   */
  env?: Record<string, string | undefined>;
  /** Folder a relative `file` resolves against: the command's `Io.cwd`. */
  cwd?: string;
  /**
   * The checks of the backend that will run the spec (`--backend local`), so
   * that a spec with problems of its own reports the backend's beside them in
   * one INVALID_APP_SPEC (asked with the entries that parse; paths as in
   * `services[0].command`). A spec without problems of its own is returned:
   * the backend raises its problems itself when it is chosen.
   */
  backendChecks?: { backend: string; problems(spec: AppSpec): Problem[] };
}

type Segment = string | number;

interface LocatedProblem {
  segments: Segment[];
  message: string;
  /** found by the backend's checks, not the spec's own */
  backend?: boolean;
  /** a backend's path that names no place in the file, shown as it wrote it */
  shown?: string;
}

/** `services[1].port`, `services[0].env.DATABASE_URL`, `metadata.labels["a.b"]` */
function formatPath(segments: readonly Segment[]): string {
  let out = '';
  for (const s of segments) {
    if (typeof s === 'number') out += `[${s}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(s)) out += out === '' ? s : `.${s}`;
    else out += `[${JSON.stringify(s)}]`;
  }
  return out === '' ? '(root)' : out;
}

function isMapping(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export async function loadAppSpec(file: string, opts: LoadAppSpecOptions = {}): Promise<AppSpec> {
  const abs = path.resolve(opts.cwd ?? process.cwd(), file);
  let shown = file;
  let target = abs;
  let text: string;
  try {
    if ((await fs.promises.stat(abs)).isDirectory()) {
      target = path.join(abs, 'topas.yaml');
      shown = path.join(file, 'topas.yaml');
    }
    text = readTextInput(target, shown, 'INVALID_APP_SPEC', 'the app spec');
  } catch (err) {
    if (err instanceof TopasError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      throw new TopasError('FILE_NOT_FOUND', `app spec not found: ${shown}`, {
        hint: 'pass --app FILE, or create topas.yaml with `topas init`',
        cause: err,
      });
    }
    throw new TopasError('INVALID_APP_SPEC', `cannot read app spec ${shown}: ${(err as Error).message}`, { cause: err });
  }
  return parseAppSpec(text, shown, opts);
}

/**
 * Parse and validate topas.yaml text. Every problem is collected and thrown at
 * once as INVALID_APP_SPEC. `file` is used in messages and, resolved, as
 * AppSpec.file (relative paths in the spec resolve against its folder).
 */
export function parseAppSpec(text: string, file: string, opts: LoadAppSpecOptions = {}): AppSpec {
  const absFile = path.resolve(opts.cwd ?? process.cwd(), file);
  const dir = path.dirname(absFile);
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) throw yamlSyntaxError(doc, file);

  const raw: unknown = yamlToJs(doc, file, 'INVALID_APP_SPEC');
  if (raw === null || raw === undefined) {
    throw new TopasError('INVALID_APP_SPEC', `${file}: the app spec is empty`, {
      problems: [{ path: file, message: 'the app spec is empty' }],
      hint: 'see `topas init` for an example',
    });
  }
  if (!isMapping(raw)) {
    throw new TopasError('INVALID_APP_SPEC', `${file}: expected a mapping at the top level, got ${describeValue(raw)}`, {
      problems: [{ path: '(root)', message: `expected a mapping at the top level, got ${describeValue(raw)}` }],
    });
  }

  const problems: LocatedProblem[] = [];
  const env = opts.env ?? {};
  const kindForm = 'apiVersion' in raw || 'kind' in raw;
  const bodyPrefix: Segment[] = kindForm ? ['spec'] : [];
  const rawBody = kindForm ? raw.spec : raw;

  substituteEnv(raw, [], env, nameSet(rawBody), problems);

  const schema = kindForm ? kindAppSchema : plainAppSchema;
  const parsed = schema.safeParse(raw, { reportInput: true });
  if (!parsed.success) {
    for (const issue of parsed.error.issues) problems.push(...issueProblems(issue, schema));
  }

  const initSQLFromFile = new Map<number, string>();
  // A body of the wrong type was already reported by the schema.
  if (isMapping(rawBody)) crossChecks(rawBody, bodyPrefix, dir, initSQLFromFile, problems);

  if (problems.length > 0) {
    const forBackend = isMapping(rawBody) && opts.backendChecks ? backendProblems(rawBody, bodyPrefix, opts.backendChecks, { name: specName(raw, dir), file: absFile, dir }) : [];
    throw invalidSpec(doc, file, [...problems, ...forBackend], forBackend.length ? opts.backendChecks?.backend : undefined);
  }
  if (!parsed.success) throw new TopasError('INTERNAL', 'app spec validation failed without problems');

  const data = parsed.data;
  const body = 'spec' in data ? data.spec : data;
  const appName = 'metadata' in data ? data.metadata.name : (data.name ?? defaultAppName(dir));
  const rawServices = body.services ?? [];
  const names = new Set([...rawServices.map((s) => s.name), ...(body.databases ?? []).map((d) => d.name)]);
  return {
    name: appName,
    file: absFile,
    dir,
    services: rawServices.map((s) => normalizeService(s, names)),
    databases: (body.databases ?? []).map((d, i) => normalizeDatabase(d, initSQLFromFile.get(i))),
    ...(body.env && Object.keys(body.env).length ? { env: body.env } : {}),
  };
}

function defaultAppName(dir: string): string {
  const base = path
    .basename(dir)
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^[^a-z]+/, '')
    .slice(0, 63)
    .replace(/-+$/, '');
  return base === '' ? 'app' : base;
}

function yamlSyntaxError(doc: Document, file: string): TopasError {
  const problems: Problem[] = doc.errors.map((e) => {
    const pos = e.linePos?.[0];
    const where = pos ? `${file}:${pos.line}:${pos.col}` : file;
    // prettyErrors appends " at line L, column C:" and a code frame; keep the sentence.
    let sentence = e.message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, '');
    if (/Maximum call stack/.test(sentence)) sentence = 'nested too deeply';
    return { path: where, message: sentence };
  });
  const first = problems[0];
  return new TopasError('INVALID_APP_SPEC', `${first.path}: YAML syntax error: ${first.message}`, {
    problems,
    hint: doc.errors[0].message.split('\n').slice(1).join('\n').trim() || undefined,
  });
}

/** The backend's problems with the entries that parse, located in the file (a check that throws adds none: the backend says so when it starts). */
function backendProblems(body: Record<string, unknown>, prefix: Segment[], checks: NonNullable<LoadAppSpecOptions['backendChecks']>, base: { name: string; file: string; dir: string }): LocatedProblem[] {
  const partial = partialAppSpec(body, base);
  let found: Problem[];
  try {
    found = checks.problems(partial.spec);
  } catch {
    return [];
  }
  return found.map((p) => {
    const at = locateInFile(p.path, partial, prefix);
    return at ? { segments: at, message: p.message, backend: true } : { segments: [...prefix], message: p.message, backend: true, shown: p.path };
  });
}

function specName(raw: Record<string, unknown>, dir: string): string {
  const named = isMapping(raw.metadata) ? raw.metadata.name : raw.name;
  return typeof named === 'string' ? named : defaultAppName(dir);
}

function invalidSpec(doc: Document, file: string, located: LocatedProblem[], backend?: string): TopasError {
  // Report in file order, each problem once.
  const seen = new Set<string>();
  const withPos = located
    .map((p, i) => ({ p, i, pos: positionOf(doc, p.segments) }))
    .filter(({ p }) => {
      const key = `${p.shown ?? formatPath(p.segments)}\0${p.message}`;
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    })
    .sort((a, b) => a.pos - b.pos || a.i - b.i);
  const problems = withPos.map(({ p }) => ({ path: p.shown ?? formatPath(p.segments), message: p.message }));
  const n = problems.length;
  const ofBackend = withPos.filter(({ p }) => p.backend).length;
  const also = backend && ofBackend ? ` (${ofBackend} of them for backend ${backend})` : '';
  return new TopasError('INVALID_APP_SPEC', `${file}: ${n} problem${n === 1 ? '' : 's'} in the app spec${also}`, { problems });
}

function positionOf(doc: Document, segments: readonly Segment[]): number {
  // An unknown key has no value node of its own path in the schema sense, but
  // the YAML has one; fall back to the closest ancestor that exists.
  for (let len = segments.length; len >= 0; len--) {
    const node = doc.getIn(segments.slice(0, len), true) as { range?: [number, number, number] } | undefined;
    if (node && typeof node === 'object' && node.range) return node.range[0];
  }
  return Number.MAX_SAFE_INTEGER;
}

function issueProblems(issue: z.core.$ZodIssue, schema: unknown): LocatedProblem[] {
  const segments = issue.path.filter((s): s is Segment => typeof s !== 'symbol');
  if (issue.code === 'unrecognized_keys') {
    const known = knownKeysAt(schema, segments);
    return issue.keys.map((k) => ({ segments: [...segments, k], message: `unknown field${suggestion(k, known)}` }));
  }
  if (issue.code === 'invalid_type') {
    const input = (issue as { input?: unknown }).input;
    if (input === undefined) return [{ segments, message: 'required field is missing' }];
    const expected =
      issue.expected === 'array' ? 'a list' : issue.expected === 'object' || issue.expected === 'record' ? 'a mapping' : `a ${issue.expected}`;
    return [{ segments, message: `expected ${expected}, got ${describeValue(input)}` }];
  }
  return [{ segments, message: issue.message }];
}

/** Names of services and databases as written (for hints about `${name}` typos). */
function nameSet(body: unknown): Set<string> {
  const out = new Set<string>();
  if (!isMapping(body)) return out;
  for (const list of [body.services, body.databases]) {
    if (!Array.isArray(list)) continue;
    for (const item of list) if (isMapping(item) && typeof item.name === 'string') out.add(item.name);
  }
  return out;
}

// No `${VAR-default}` form: it would swallow references to names with a dash (`${users-db.url}`).
const ENV_PLACEHOLDER_RE = /\$(\$?)\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;

/** Replace `${VAR}` placeholders in every string value, in place. */
function substituteEnv(
  node: unknown,
  segments: Segment[],
  env: Record<string, string | undefined>,
  names: Set<string>,
  problems: LocatedProblem[],
): unknown {
  if (typeof node === 'string') {
    const unclosed = findUnclosedReference(node);
    if (unclosed !== undefined) {
      problems.push({ segments, message: `unclosed reference ${JSON.stringify(unclosed)} (a "\${" needs its "}"; write $\${ for a literal \${)` });
      return node;
    }
    return node.replace(ENV_PLACEHOLDER_RE, (whole, escaped: string, varName: string, fallback?: string) => {
      if (escaped) return whole.slice(1);
      const value = env[varName];
      if (fallback !== undefined && (value === undefined || value === '')) return fallback;
      if (value !== undefined) return value;
      const hint = names.has(varName) ? `; to reference ${varName}, name a field, e.g. \${${varName}.url}` : '';
      problems.push({ segments, message: `environment variable ${varName} is not set (write \${${varName}:-default} for a default)${hint}` });
      return whole;
    });
  }
  if (Array.isArray(node)) {
    for (let i = 0; i < node.length; i++) node[i] = substituteEnv(node[i], [...segments, i], env, names, problems);
  } else if (isMapping(node)) {
    for (const k of Object.keys(node)) node[k] = substituteEnv(node[k], [...segments, k], env, names, problems);
  }
  return node;
}

interface Entity {
  kind: 'service' | 'database';
  segments: Segment[];
  raw: Record<string, unknown>;
}

/** Rules across fields and entries; tolerant of values the schema already rejected. */
function crossChecks(
  body: Record<string, unknown>,
  prefix: Segment[],
  dir: string,
  initSQLFromFile: Map<number, string>,
  problems: LocatedProblem[],
): void {
  // scenarios reach services by name (net, db, sut.endpoint); an address baked into a variable would go stale
  if (isMapping(body.env)) {
    for (const [k, v] of Object.entries(body.env)) {
      if (typeof v === 'string' && /\$\{\s*[A-Za-z][\w-]*\.(url|host|port|user|password|dbname)\s*\}/.test(v)) {
        problems.push({ segments: [...prefix, 'env', k], message: 'references like ${db.url} are resolved in services\' env only; scenarios reach services by name (net.get("http://api/..."), db.connect("db"), sut.endpoint)' });
      }
    }
  }
  const entities: Entity[] = [];
  for (const kind of ['databases', 'services'] as const) {
    const list = body[kind];
    if (!Array.isArray(list)) continue;
    list.forEach((raw, i) => {
      if (isMapping(raw)) entities.push({ kind: kind === 'services' ? 'service' : 'database', segments: [...prefix, kind, i], raw });
    });
  }
  if (entities.length > LIMITS.appEntries) {
    problems.push({ segments: [...prefix, 'services'], message: `${entities.length} services and databases; an app has at most ${LIMITS.appEntries}` });
  }
  const totalReplicas = entities.reduce((n, e) => n + (e.kind === 'service' && typeof e.raw.replicas === 'number' && e.raw.replicas <= LIMITS.replicas ? e.raw.replicas : e.kind === 'service' ? 1 : 0), 0);
  if (totalReplicas > LIMITS.appReplicas) {
    problems.push({ segments: [...prefix, 'services'], message: `${totalReplicas} replicas in all; an app runs at most ${LIMITS.appReplicas}` });
  }
  if (entities.length === 0 && problems.length === 0) {
    problems.push({ segments: [...prefix, 'services'], message: 'define at least one service or database' });
  }

  const byName = new Map<string, Entity>();
  for (const e of entities) {
    const n = e.raw.name;
    if (typeof n !== 'string') continue;
    const first = byName.get(n);
    if (first) problems.push({ segments: [...e.segments, 'name'], message: `duplicate name "${n}" (also used by ${formatPath(first.segments)})` });
    else byName.set(n, e);
  }
  const allNames = [...byName.keys()];

  const graph = new Map<string, string[]>();
  for (const e of entities) {
    const self = typeof e.raw.name === 'string' ? e.raw.name : undefined;
    const deps: string[] = [];
    if (e.kind === 'service') {
      if (e.raw.image === undefined && e.raw.command === undefined) {
        problems.push({ segments: e.segments, message: 'needs an image (docker, kubernetes backends) or a command (local backend)' });
      }
      if (e.raw.env !== undefined && e.raw.envVars !== undefined) {
        problems.push({ segments: [...e.segments, 'envVars'], message: 'use either env or envVars (an alias), not both' });
      }
      const explicit = e.raw.depends_on;
      const list = typeof explicit === 'string' ? [explicit] : Array.isArray(explicit) ? explicit : [];
      list.forEach((dep, j) => {
        if (typeof dep !== 'string') return;
        const at = Array.isArray(explicit) ? [...e.segments, 'depends_on', j] : [...e.segments, 'depends_on'];
        if (dep === self) problems.push({ segments: at, message: 'a service cannot depend on itself' });
        else if (!byName.has(dep)) problems.push({ segments: at, message: `no service or database named "${dep}"${suggestion(dep, allNames)}` });
        else deps.push(dep);
      });
      for (const { segments, value } of referenceSites(e)) {
        for (const ref of findReferences(value)) {
          const msg = checkReference(ref.name, ref.field, ref.raw, byName, allNames);
          if (msg) problems.push({ segments, message: msg });
          else if (ref.name !== self) deps.push(ref.name);
        }
      }
      checkReadyPort(e, problems);
    } else {
      checkInitSQL(e, dir, initSQLFromFile, problems);
    }
    if (self !== undefined && byName.get(self) === e) graph.set(self, [...new Set(deps)]);
  }

  const cycle = findCycle(graph);
  if (cycle) problems.push({ segments: [...prefix, 'services'], message: `dependency cycle ${cycle.join(' -> ')}` });
}

/** Strings of a service that may hold `${name.field}` references: env values and command arguments. */
function referenceSites(e: Entity): { segments: Segment[]; value: string }[] {
  const out: { segments: Segment[]; value: string }[] = [];
  for (const key of ['env', 'envVars']) {
    const env = e.raw[key];
    if (!isMapping(env)) continue;
    for (const [k, v] of Object.entries(env)) if (typeof v === 'string') out.push({ segments: [...e.segments, key, k], value: v });
  }
  const cmd = e.raw.command;
  if (typeof cmd === 'string') out.push({ segments: [...e.segments, 'command'], value: cmd });
  else if (Array.isArray(cmd)) cmd.forEach((a, i) => typeof a === 'string' && out.push({ segments: [...e.segments, 'command', i], value: a }));
  return out;
}

function checkReference(name: string, field: string, raw: string, byName: Map<string, Entity>, allNames: string[]): string | undefined {
  const target = byName.get(name);
  if (!target) return `${raw}: no service or database named "${name}"${suggestion(name, allNames)}`;
  if (target.kind === 'database') {
    const fields: readonly string[] = DATABASE_REFERENCE_FIELDS;
    if (!fields.includes(field)) return `${raw}: unknown field "${field}" of database "${name}"; expected one of ${fields.join(', ')}${suggestion(field, fields)}`;
    return undefined;
  }
  if (field.startsWith('ports.')) {
    const portName = field.slice('ports.'.length);
    const ports = target.raw.ports;
    const known = isMapping(ports) ? Object.keys(ports) : [];
    if (!known.includes(portName)) {
      const have = known.length > 0 ? `; its named ports: ${known.join(', ')}` : '; it has no named ports';
      return `${raw}: service "${name}" has no port named "${portName}"${have}${suggestion(portName, known)}`;
    }
    return undefined;
  }
  const fields: readonly string[] = SERVICE_REFERENCE_FIELDS;
  if (!fields.includes(field)) {
    return `${raw}: unknown field "${field}" of service "${name}"; expected one of ${fields.join(', ')}, ports.<name>${suggestion(field, fields)}`;
  }
  return undefined;
}

function checkReadyPort(e: Entity, problems: LocatedProblem[]): void {
  const ready = e.raw.ready;
  if (!isMapping(ready) || typeof ready.port !== 'string' || /^\d+$/.test(ready.port)) return;
  const known = isMapping(e.raw.ports) ? Object.keys(e.raw.ports) : [];
  if (!known.includes(ready.port)) {
    const have = known.length > 0 ? `; named ports: ${known.join(', ')}` : '; the service has no named ports (ports:)';
    problems.push({ segments: [...e.segments, 'ready', 'port'], message: `no port named "${ready.port}"${have}${suggestion(ready.port, known)}` });
  }
}

function checkInitSQL(e: Entity, dir: string, initSQLFromFile: Map<number, string>, problems: LocatedProblem[]): void {
  const file = e.raw.initSQLFile;
  if (file === undefined) return;
  if (e.raw.initSQL !== undefined) {
    problems.push({ segments: [...e.segments, 'initSQLFile'], message: 'use either initSQL or initSQLFile, not both' });
    return;
  }
  if (typeof file !== 'string' || file.trim() === '') return;
  const abs = path.resolve(dir, file);
  try {
    const stat = fs.statSync(abs);
    if (!stat.isFile()) {
      problems.push({ segments: [...e.segments, 'initSQLFile'], message: `${file} is not a regular file` });
      return;
    }
    if (stat.size > LIMITS.initSqlFileBytes) {
      problems.push({ segments: [...e.segments, 'initSQLFile'], message: `${file} is ${formatBytes(stat.size)}; at most ${formatBytes(LIMITS.initSqlFileBytes)}` });
      return;
    }
    initSQLFromFile.set(e.segments[e.segments.length - 1] as number, fs.readFileSync(abs, 'utf8'));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    problems.push({
      segments: [...e.segments, 'initSQLFile'],
      message: code === 'ENOENT' ? `file not found: ${abs}` : `cannot read ${abs}: ${(err as Error).message}`,
    });
  }
}
