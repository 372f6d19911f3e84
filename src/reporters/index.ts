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

export function getReporter(name: string): Reporter {
  const r = reporters.get(name);
  if (!r) {
    throw new TopasError('INVALID_FLAGS', `unknown reporter "${name}"`, { hint: `available: ${reporterNames().join(', ')}` });
  }
  return r;
}
