import * as fs from 'node:fs';
import * as path from 'node:path';
import { TopasError } from '../errors';
import { githubReporter } from './github-reporter';
import { htmlReporter } from './html-reporter';
import { jsonReporter } from './json-reporter';
import { junitReporter } from './junit-reporter';
import type { RunReport } from './run-report';
import { tableReporter } from './table-reporter';

export type { RunReport } from './run-report';

export interface ReporterOptions {
  color: boolean;
  /** applied to everything a reporter outputs (createMasker / maskSecrets from src/spec/secrets.ts) */
  mask: (s: string) => string;
  /** the process environment (from Io): the github reporter appends its summary to $GITHUB_STEP_SUMMARY */
  env?: Readonly<Record<string, string | undefined>>;
}

export type Reporter = (report: RunReport, opts: ReporterOptions) => string;

/**
 * A reporter as an object (the form custom reporters take): `render` gives
 * the output (written to stdout or the `:file`), `onRunEnd` is told the
 * finished run (e.g. to post it somewhere); both optional, at least one.
 */
export interface ReporterObject {
  name?: string;
  render?(report: RunReport, opts: ReporterOptions): string | undefined;
  onRunEnd?(report: RunReport, opts: ReporterOptions): void;
}

/** `./reporters/slack.js`, `/abs/r.cjs`: a custom reporter loaded from a path rather than looked up by name. */
export function isReporterPath(name: string): boolean {
  return name.startsWith('./') || name.startsWith('../') || path.isAbsolute(name) || /\.(c?js)$/.test(name);
}

const loaded = new Map<string, Reporter>();

/**
 * A custom reporter from a CommonJS file (relative to `cwd`): module.exports
 * (or its `default`) is a function `(report, opts) => string` or a
 * ReporterObject. Loaded once per process; INVALID_FLAGS when it cannot be.
 */
export function loadReporterFile(name: string, cwd: string): Reporter {
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
  let reporter: Reporter;
  if (typeof exported === 'function') reporter = exported as Reporter;
  else if (exported && typeof exported === 'object' && (typeof exported.render === 'function' || typeof exported.onRunEnd === 'function')) {
    const obj = exported;
    reporter = (report, opts) => {
      const out = obj.render ? (obj.render(report, opts) ?? '') : '';
      obj.onRunEnd?.(report, opts);
      return String(out);
    };
  } else throw new TopasError('INVALID_FLAGS', `reporter ${name} exports neither a function nor an object with render() or onRunEnd()`);
  loaded.set(file, reporter);
  return reporter;
}

const reporters = new Map<string, Reporter>([
  ['table', tableReporter],
  ['json', jsonReporter],
  ['junit', junitReporter],
  ['html', htmlReporter],
  ['github', githubReporter],
]);

/** For reporters that live elsewhere (html, github). A later registration replaces an earlier one. */
export function registerReporter(name: string, reporter: Reporter): void {
  reporters.set(name, reporter);
}

export function reporterNames(): string[] {
  return [...reporters.keys()];
}

export function getReporter(name: string, cwd?: string): Reporter {
  if (cwd !== undefined && isReporterPath(name)) return loadReporterFile(name, cwd);
  const r = reporters.get(name);
  if (!r) {
    throw new TopasError('INVALID_FLAGS', `unknown reporter "${name}"`, { hint: `available: ${reporterNames().join(', ')}` });
  }
  return r;
}
