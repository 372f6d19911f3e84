import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseDocument } from 'yaml';
import { TopasError, type Problem } from '../errors';
import { suggestion } from '../spec/did-you-mean';
import { tryParseDurationMs } from '../util/duration';
import { LIMITS, formatLimitDuration, readTextInput } from '../util/limits';
import { yamlToJs } from '../util/yaml-input';
import { parseShapeCall } from '../shape/shape-calls';
import type { AppSpec } from '../spec/app-spec';

/**
 * A playbook: roles, each running one Lua script in N concurrent instances that
 * coordinate through `sync` (../shared/spec/playbook.md).
 */
export interface Playbook {
  file: string;
  dir: string;
  name: string;
  /** absolute path of the app spec, when the playbook names one */
  app?: string;
  timeoutMs?: number;
  /** how long a `sync.barrier`/`sync.wait` waits by default before failing */
  barrierTimeoutMs?: number;
  roles: PlaybookRole[];
  /** declarative traffic shaping (at a time, or on a sync signal) */
  shaping: PlaybookShapeStep[];
}

export interface PlaybookRole {
  name: string;
  /** absolute path */
  script: string;
  instances: number;
  params: Record<string, unknown>;
}

export interface PlaybookShapeStep {
  /** when: milliseconds after start, or a sync signal name */
  atMs?: number;
  on?: string;
  service: string;
  /** one of the shape module's calls and its arguments, e.g. { latency: "200ms" } */
  action: string;
  args: unknown[];
}

const TOP_KEYS = ['name', 'app', 'timeout', 'barrier_timeout', 'roles', 'shaping'];
const ROLE_KEYS = ['name', 'script', 'instances', 'params'];
const SHAPE_KEYS = ['at', 'on', 'service', 'latency', 'jitter', 'bandwidth', 'loss', 'down', 'timeout', 'http_fault', 'reset'];
const SHAPE_ACTIONS = ['latency', 'bandwidth', 'loss', 'down', 'timeout', 'http_fault', 'reset'];

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function parsePlaybook(text: string, file: string, opts: PlaybookLoadOptions = {}): Playbook {
  const problems: Problem[] = [];
  // prettyErrors gives each error its line and column
  const doc = parseDocument(text, { prettyErrors: true });
  for (const e of doc.errors) {
    const pos = e.linePos?.[0];
    const message = e.message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, '');
    problems.push({ path: `${path.basename(file)}${pos ? `:${pos.line}:${pos.col}` : ''}`, message: /Maximum call stack/.test(message) ? 'nested too deeply' : message });
  }
  if (problems.length) throw new TopasError('INVALID_PLAYBOOK', `playbook ${file} is not valid YAML`, { problems });
  const raw = yamlToJs(doc, file, 'INVALID_PLAYBOOK');
  if (!isRecord(raw)) {
    throw new TopasError('INVALID_PLAYBOOK', `playbook ${file}: expected a mapping with roles`, { problems: [{ path: file, message: raw === null || raw === undefined ? 'the playbook is empty' : 'expected a mapping with roles' }] });
  }
  const dir = path.dirname(path.resolve(file));
  const unknownKeys = (obj: Record<string, unknown>, known: string[], at: string) => {
    for (const k of Object.keys(obj)) if (!known.includes(k)) problems.push({ path: at ? `${at}.${k}` : k, message: `unknown field${suggestion(k, known)}` });
  };
  unknownKeys(raw, TOP_KEYS, '');

  const durationField = (v: unknown, at: string): number | undefined => {
    if (v === undefined) return undefined;
    const ms = tryParseDurationMs(v);
    if (ms === undefined) problems.push({ path: at, message: `expected a duration like "30s" or "5m", got ${JSON.stringify(v)}` });
    // 0 would mean no limit at all for a scenario
    else if (ms <= 0) problems.push({ path: at, message: `expected a duration above 0, got ${JSON.stringify(v)}` });
    else if (ms > LIMITS.durationMs) problems.push({ path: at, message: `expected at most ${formatLimitDuration(LIMITS.durationMs)}, got ${JSON.stringify(v)}` });
    return ms;
  };
  const timeoutMs = durationField(raw.timeout, 'timeout');
  const barrierTimeoutMs = durationField(raw.barrier_timeout, 'barrier_timeout');
  let app: string | undefined;
  if (raw.app !== undefined) {
    if (typeof raw.app !== 'string') problems.push({ path: 'app', message: 'expected a path to topas.yaml' });
    else {
      app = path.resolve(dir, raw.app);
      // --app wins over it: a Git playbook's app: may point at a file of the repository's own project
      if (opts.appOverridden) app = undefined;
      else if (!fs.existsSync(app)) problems.push({ path: 'app', message: `${raw.app} does not exist` });
    }
  }

  const roles: PlaybookRole[] = [];
  if (!Array.isArray(raw.roles) || raw.roles.length === 0) problems.push({ path: 'roles', message: 'expected a list of at least one role' });
  else {
    const names = new Set<string>();
    let totalInstances = 0;
    raw.roles.forEach((r: unknown, i: number) => {
      const at = `roles[${i}]`;
      if (!isRecord(r)) return problems.push({ path: at, message: 'expected a mapping with name, script, instances' });
      unknownKeys(r, ROLE_KEYS, at);
      const name = typeof r.name === 'string' && /^[A-Za-z][\w-]*$/.test(r.name) ? r.name : undefined;
      if (!name) problems.push({ path: `${at}.name`, message: `expected a name of letters, digits, - and _, got ${JSON.stringify(r.name)}` });
      else if (names.has(name)) problems.push({ path: `${at}.name`, message: `duplicate role "${name}"` });
      else names.add(name);
      let script = '';
      if (typeof r.script !== 'string' || !r.script.endsWith('.lua')) problems.push({ path: `${at}.script`, message: `expected a .lua file, got ${JSON.stringify(r.script)}` });
      else {
        script = path.resolve(dir, r.script);
        if (!fs.existsSync(script)) problems.push({ path: `${at}.script`, message: `${r.script} does not exist` });
        else if (!fs.statSync(script).isFile()) problems.push({ path: `${at}.script`, message: `${r.script} is not a file` });
      }
      const instances = r.instances === undefined ? 1 : r.instances;
      if (typeof instances !== 'number' || !Number.isInteger(instances) || instances < 1 || instances > LIMITS.playbookInstances) {
        problems.push({ path: `${at}.instances`, message: `expected an integer 1-${LIMITS.playbookInstances}, got ${JSON.stringify(r.instances)}` });
      } else totalInstances += instances;
      if (r.params !== undefined && !isRecord(r.params)) problems.push({ path: `${at}.params`, message: 'expected a mapping' });
      roles.push({ name: name ?? `role${i}`, script, instances: Number(instances), params: isRecord(r.params) ? r.params : {} });
    });
    if (totalInstances > LIMITS.playbookInstances) problems.push({ path: 'roles', message: `${totalInstances} instances in all; a playbook runs at most ${LIMITS.playbookInstances}` });
  }

  const shaping: PlaybookShapeStep[] = [];
  if (raw.shaping !== undefined) {
    if (!Array.isArray(raw.shaping)) problems.push({ path: 'shaping', message: 'expected a list' });
    else
      raw.shaping.forEach((s: unknown, i: number) => {
        const at = `shaping[${i}]`;
        if (!isRecord(s)) return problems.push({ path: at, message: 'expected a mapping' });
        unknownKeys(s, SHAPE_KEYS, at);
        const atMs = durationField(s.at, `${at}.at`);
        const on = typeof s.on === 'string' ? s.on : undefined;
        if ((atMs === undefined) === (on === undefined)) problems.push({ path: at, message: 'give exactly one of `at: <duration>` or `on: <signal>`' });
        if (typeof s.service !== 'string') problems.push({ path: `${at}.service`, message: 'expected a service name' });
        const actions = SHAPE_ACTIONS.filter((a) => s[a] !== undefined);
        if (actions.length !== 1) return problems.push({ path: at, message: `give exactly one of ${SHAPE_ACTIONS.join(', ')}` });
        const action = actions[0];
        const value = s[action];
        const args: unknown[] = action === 'latency' ? [value, s.jitter === undefined ? {} : { jitter: s.jitter }] : action === 'down' || action === 'timeout' || action === 'reset' ? [] : [value];
        // the same checks as the Lua shape module, now rather than when the step fires
        if (typeof s.service === 'string') {
          try {
            parseShapeCall(action, [s.service, ...args]);
          } catch (err) {
            problems.push({ path: `${at}.${action}`, message: (err as Error).message });
          }
        }
        shaping.push({ atMs, on, service: String(s.service), action, args });
      });
  }
  if (problems.length) throw new TopasError('INVALID_PLAYBOOK', `playbook ${path.basename(file)} has ${problems.length} problem(s)`, { problems });
  const name = typeof raw.name === 'string' ? raw.name : path.basename(file).replace(/\.ya?ml$/, '');
  return { file: path.resolve(file), dir, name, app, timeoutMs, barrierTimeoutMs, roles, shaping };
}

export interface PlaybookLoadOptions {
  /** `--app` was given: the playbook's `app:` is neither used nor required to exist */
  appOverridden?: boolean;
}

export function loadPlaybook(file: string, opts: PlaybookLoadOptions = {}): Playbook {
  let text: string;
  try {
    text = readTextInput(file, file, 'INVALID_PLAYBOOK', 'the playbook');
  } catch (err) {
    if (err instanceof TopasError) throw err;
    throw new TopasError('FILE_NOT_FOUND', `playbook ${file} does not exist`);
  }
  return parsePlaybook(text, file, opts);
}

/** Shaping steps must name a service or database of the app the playbook runs against. */
export function checkShapingTargets(playbooks: Playbook[], spec: Pick<AppSpec, 'name' | 'services' | 'databases'>): void {
  const names = [...spec.services, ...spec.databases].map((e) => e.name);
  const problems: Problem[] = [];
  for (const pb of playbooks) {
    pb.shaping.forEach((step, i) => {
      if (!names.includes(step.service)) {
        problems.push({ path: `${path.basename(pb.file)}: shaping[${i}].service`, message: `app ${spec.name} has no service or database named "${step.service}"${suggestion(step.service, names)}` });
      }
    });
  }
  if (problems.length) throw new TopasError('INVALID_PLAYBOOK', `${problems.length} shaping step(s) name no service of the app`, { problems });
}
