import * as fs from 'node:fs';
import * as path from 'node:path';
import { TopasError } from '../errors';
import { maskDeep, maskSecrets } from '../spec/secrets';
import { githubReporter } from './github-reporter';
import { htmlReporter } from './html-reporter';
import { jsonReporter } from './json-reporter';
import { junitReporter } from './junit-reporter';
import type { LoadSeriesPoint, RunReport } from './run-report';
import type { ScenarioResult } from '../run/scenario-types';
import { tableReporter } from './table-reporter';
import { summaryReporter } from './summary-reporter';

export type { RunReport } from './run-report';

export interface ReporterOptions {
  color: boolean;
  /** applied to everything a reporter outputs (createMasker / maskSecrets from src/spec/secrets.ts) */
  mask: (s: string) => string;
  /** the process environment (from Io): the github reporter appends its summary to $GITHUB_STEP_SUMMARY */
  env?: Readonly<Record<string, string | undefined>>;
  /** the command's --json: a reporter with a JSON form (summary) gives that */
  json?: boolean;
}

export type Reporter = (report: RunReport, opts: ReporterOptions) => string;

/**
 * A reporter: `render` gives the output (written to stdout or the `:file`),
 * `onRunEnd` is told the finished run (e.g. to post it somewhere), and the
 * lifecycle hooks are called as the run goes. Every member is optional; the
 * built-in reporters and custom ones (a file given by path) take this form.
 */
export interface ReporterObject {
  name?: string;
  render?(report: RunReport, opts: ReporterOptions): string | undefined;
  onRunEnd?(report: RunReport, opts: ReporterOptions): void;
  /** lifecycle hooks, called as the run goes (a hook that throws is reported once and not called again) */
  onRunStart?(info: { runId: string; kind: 'run' | 'load'; app?: string }): void;
  onStepEnd?(step: { scenarioRunId: string; name: string; state: string; error?: { message: string; location?: string } }): void;
  onScenarioEnd?(result: ScenarioResult): void;
  /** each second of a load run, once it is over, with its live figures */
  onLoadSecond?(point: LoadSeriesPoint): void;
}

export type ReporterHookName = 'onRunStart' | 'onStepEnd' | 'onScenarioEnd' | 'onLoadSecond';

/** Calls the lifecycle hooks of the reporters a run was asked for. */
export interface ReporterHooks {
  runStart(info: Parameters<NonNullable<ReporterObject['onRunStart']>>[0]): void;
  stepEnd(step: Parameters<NonNullable<ReporterObject['onStepEnd']>>[0]): void;
  scenarioEnd(result: ScenarioResult): void;
  loadSecond(point: LoadSeriesPoint): void;
}

/**
 * Hooks of the reporters requested, by name or path (custom ones were loaded
 * by checkReporterOutputs already). Masked values only reach them where the
 * caller masked them, and every registered secret is masked once more; a
 * hook that throws is named on `warn` once and then left out, so a broken
 * reporter cannot fail the run.
 */
export function reporterHooks(names: readonly string[], cwd: string, warn: (line: string) => void): ReporterHooks {
  const objects: Array<{ name: string; obj: ReporterObject }> = [];
  for (const n of new Set(names)) {
    const obj = isReporterPath(n) ? loadReporterObject(n, cwd) : registry.get(n);
    if (obj && HOOKS.some((h) => typeof obj[h] === 'function')) objects.push({ name: n, obj });
  }
  const broken = new Set<string>();
  const masked = (arg: unknown) => (objects.length ? maskDeep(arg, maskSecrets) : arg);
  const call = (hook: ReporterHookName, arg: unknown) => {
    for (const { name, obj } of objects) {
      const fn = obj[hook] as ((a: unknown) => void) | undefined;
      if (!fn || broken.has(name)) continue;
      try {
        fn.call(obj, masked(arg));
      } catch (err) {
        broken.add(name);
        warn(`reporter ${name}: ${hook} failed (${(err as Error).message}); its hooks are not called again`);
      }
    }
  };
  return {
    runStart: (info) => call('onRunStart', info),
    stepEnd: (step) => call('onStepEnd', step),
    scenarioEnd: (result) => call('onScenarioEnd', result),
    loadSecond: (point) => call('onLoadSecond', point),
  };
}

/** `./reporters/slack.js`, `/abs/r.cjs`: a custom reporter loaded from a path rather than looked up by name. */
export function isReporterPath(name: string): boolean {
  return name.startsWith('./') || name.startsWith('../') || path.isAbsolute(name) || /\.(c?js)$/.test(name);
}

/** The run's mask, then every secret registered in this process (a run without an app has an identity mask). */
function everySecret(mask: (s: string) => string): (s: string) => string {
  return (s) => maskSecrets(mask(s));
}

const HOOKS: ReporterHookName[] = ['onRunStart', 'onStepEnd', 'onScenarioEnd', 'onLoadSecond'];
const MEMBERS = ['render', 'onRunEnd', ...HOOKS];
const loaded = new Map<string, ReporterObject>();

/**
 * A custom reporter from a CommonJS file (relative to `cwd`): module.exports
 * (or its `default`) is a function `(report, opts) => string` or a
 * ReporterObject. Loaded once per process; INVALID_FLAGS when it cannot be.
 * What it renders and is told at the end is masked first.
 */
function loadReporterObject(name: string, cwd: string): ReporterObject {
  const file = path.resolve(cwd, name);
  const cached = loaded.get(file);
  if (cached) return cached;
  if (!fs.existsSync(file)) throw new TopasError('INVALID_FLAGS', `reporter ${name} not found`, { hint: 'give a reporter name or the path of a .js file' });
  let mod: unknown;
  try {
    mod = require(file);
  } catch (err) {
    throw new TopasError('INVALID_FLAGS', `reporter ${name} does not load: ${(err as Error).message.split('\n')[0]}`);
  }
  const exported = (mod && typeof mod === 'object' && 'default' in mod ? (mod as { default: unknown }).default : mod) as Reporter | ReporterObject | undefined;
  let reporter: ReporterObject;
  // a custom reporter sees masked values only (what it does with them is out of our hands)
  if (typeof exported === 'function') {
    const fn = exported as Reporter;
    reporter = { name, render: (report, opts) => String(fn(maskDeep(report, everySecret(opts.mask)), opts) ?? '') };
  } else if (exported && typeof exported === 'object' && MEMBERS.some((h) => typeof (exported as Record<string, unknown>)[h] === 'function')) {
    const obj = exported;
    reporter = {
      name,
      render: obj.render ? (report, opts) => String(obj.render!(maskDeep(report, everySecret(opts.mask)), opts) ?? '') : undefined,
      onRunEnd: obj.onRunEnd ? (report, opts) => obj.onRunEnd!(maskDeep(report, everySecret(opts.mask)), opts) : undefined,
      ...Object.fromEntries(HOOKS.filter((h) => typeof obj[h] === 'function').map((h) => [h, (arg: never) => (obj[h] as (a: never) => void).call(obj, arg)])),
    };
  } else throw new TopasError('INVALID_FLAGS', `reporter ${name} exports neither a function nor an object with render(), onRunEnd() or another hook`);
  loaded.set(file, reporter);
  return reporter;
}

/** A custom reporter from a file, as a render function (render, then onRunEnd). */
export function loadReporterFile(name: string, cwd: string): Reporter {
  return asFunction(loadReporterObject(name, cwd));
}

function asFunction(obj: ReporterObject): Reporter {
  return (report, opts) => {
    const out = obj.render?.(report, opts) ?? '';
    obj.onRunEnd?.(report, opts);
    return out;
  };
}

const registry = new Map<string, ReporterObject>([
  ['table', { name: 'table', render: tableReporter }],
  ['json', { name: 'json', render: jsonReporter }],
  ['junit', { name: 'junit', render: junitReporter }],
  ['html', { name: 'html', render: htmlReporter }],
  ['github', { name: 'github', render: githubReporter }],
  ['summary', summaryReporter],
]);

/** A reporter that lives elsewhere (a plugin). A later registration replaces an earlier one. */
export function registerReporter(name: string, reporter: Reporter | ReporterObject): void {
  registry.set(name, typeof reporter === 'function' ? { name, render: reporter } : { name, ...reporter });
}

export function reporterNames(): string[] {
  return [...registry.keys()];
}

/** A reporter by name, or for a path a custom one from that file (relative to `cwd`). */
export function getReporterObject(name: string, cwd?: string): ReporterObject {
  if (cwd !== undefined && isReporterPath(name)) return loadReporterObject(name, cwd);
  const r = registry.get(name);
  if (!r) {
    throw new TopasError('INVALID_FLAGS', `unknown reporter "${name}"`, { hint: `available: ${reporterNames().join(', ')}` });
  }
  return r;
}

/** getReporterObject as a render function (render, then onRunEnd). */
export function getReporter(name: string, cwd?: string): Reporter {
  return asFunction(getReporterObject(name, cwd));
}
