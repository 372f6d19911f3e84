import * as fs from 'node:fs';
import { colorEnabled } from '../util/color';
import * as path from 'node:path';
import type { Io } from '../io';
import { getReporter, getReporterObject, isReporterPath } from '../reporters/index';
import type { RunReport } from '../reporters/run-report';
import { TopasError, type Problem } from '../errors';

export interface ReporterRequest {
  name: string;
  /** write here instead of stdout */
  file?: string;
  /** the command's --json: the reporter gives its JSON form */
  json?: boolean;
}

const DETAILED = new Set(['html', 'github']);

/** `--reporter name[:path]`, repeatable; validated before anything runs. */
export function parseReporterFlags(values: string[], json: boolean, kind: 'run' | 'load' = 'run'): ReporterRequest[] {
  const requests = values.map((v) => {
    const i = v.indexOf(':');
    return i < 0 ? { name: v } : { name: v.slice(0, i), file: v.slice(i + 1) };
  });
  const problems: Problem[] = [];
  for (const r of requests) {
    // a custom reporter's path is relative to the command's cwd: checkReporterOutputs loads it
    if (isReporterPath(r.name)) continue;
    try {
      getReporter(r.name);
    } catch (err) {
      if (!(err instanceof TopasError)) throw err;
      problems.push({ path: `--reporter ${r.name}${r.file === undefined ? '' : `:${r.file}`}`, message: `${err.message}${err.hint ? ` (${err.hint})` : ''}` });
    }
  }
  if (problems.length) throw new TopasError('INVALID_FLAGS', `--reporter: ${problems.length === 1 ? problems[0].message : 'unknown reporters'}`, { problems });
  const toStdout = requests.filter((r) => !r.file);
  // `topas load`'s stdout is its summary (the `summary` reporter), `topas run`'s the table; --json gives either as JSON
  if (kind === 'load') {
    if (json && toStdout.length) throw new TopasError('INVALID_FLAGS', '--json prints the summary on stdout; give each reporter a file (--reporter html:report.html)');
    if (json) return [...requests, { name: 'summary', json: true }];
    if (toStdout.length === 0) requests.unshift({ name: 'summary' });
    return requests;
  }
  if (json) {
    if (toStdout.some((r) => r.name !== 'json')) throw new TopasError('INVALID_FLAGS', '--json prints JSON on stdout; give other reporters a file (--reporter junit:report.xml)');
    return [...requests.filter((r) => r.file), { name: 'json' }];
  }
  if (toStdout.length === 0) requests.unshift({ name: 'table' });
  return requests;
}

/**
 * Every reporter's output path must be writable before the run starts (not
 * after it, when the results would be lost): the path is not a folder, its
 * parent is a folder or can be made one, and both are writable. Throws one
 * INVALID_FLAGS naming each bad `flag name:path`.
 */
export function checkReporterOutputs(requests: ReporterRequest[], cwd: string, flag = '--reporter'): void {
  const problems: Problem[] = [];
  const seen = new Map<string, string>();
  for (const r of requests) {
    if (isReporterPath(r.name)) {
      try {
        getReporter(r.name, cwd);
      } catch (err) {
        if (!(err instanceof TopasError)) throw err;
        problems.push({ path: `${flag} ${r.name}`, message: `${err.message}${err.hint ? ` (${err.hint})` : ''}` });
        continue;
      }
    }
    if (r.file === undefined) continue;
    const at = flag === '--reporter' ? `${flag} ${r.name}:${r.file}` : `${flag} ${r.file}`;
    const message = outputPathProblem(r.file, cwd);
    if (message) {
      problems.push({ path: at, message });
      continue;
    }
    const abs = path.resolve(cwd, r.file);
    const other = seen.get(abs);
    if (other) problems.push({ path: at, message: `${other} writes the same file` });
    else seen.set(abs, at);
  }
  if (problems.length) {
    throw new TopasError('INVALID_FLAGS', `${problems.length === 1 ? problems[0].path : flag}: report output cannot be written`, { problems });
  }
}

function outputPathProblem(file: string, cwd: string): string | undefined {
  if (file.trim() === '') return 'expected a file path after ":"';
  if (file.includes('\0')) return 'the path contains a NUL byte';
  const abs = path.resolve(cwd, file);
  const stat = statOrUndefined(abs);
  if (stat) {
    if (stat.isDirectory()) return `${file} is a folder; give a file path`;
    if (!writable(abs)) return `${file} is not writable`;
    return undefined;
  }
  // the nearest existing ancestor must be a folder we can create entries in
  let dir = path.dirname(abs);
  for (;;) {
    const s = statOrUndefined(dir);
    if (s) {
      if (!s.isDirectory()) return `${path.relative(cwd, dir) || dir} is a file, so ${file} cannot be created under it`;
      if (!writable(dir)) return `cannot create ${file}: ${path.relative(cwd, dir) || dir} is not writable`;
      return undefined;
    }
    const parent = path.dirname(dir);
    if (parent === dir) return `cannot create ${file}`;
    dir = parent;
  }
}

function statOrUndefined(p: string): fs.Stats | undefined {
  try {
    return fs.statSync(p);
  } catch {
    return undefined;
  }
}

function writable(p: string): boolean {
  try {
    fs.accessSync(p, fs.constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Every reporter masks what it renders before encoding it (a secret escaped
 * for XML or JSON no longer looks like itself); its output is masked once more
 * here, for the encoded forms and for reporters registered from elsewhere.
 */
export function renderReports(
  report: RunReport,
  requests: ReporterRequest[],
  ctx: { io: Io; mask: (s: string) => string; details?: Pick<RunReport, 'kind' | 'exitCode' | 'sut' | 'logs'> },
): void {
  for (const r of requests) {
    // the table, json and junit outputs of a scenario run stay as they were; html and github show the SUT and logs too
    const input = ctx.details && DETAILED.has(r.name) ? { ...report, ...ctx.details } : report;
    const reporter = getReporterObject(r.name, ctx.io.cwd);
    const opts = { color: colorEnabled(ctx.io.env, ctx.io.stdout) && !r.file, mask: ctx.mask, env: ctx.io.env, ...(r.json ? { json: true } : {}) };
    const text = ctx.mask(reporter.render?.(input, opts) ?? '');
    reporter.onRunEnd?.(input, opts);
    if (text === '' && !r.file) continue; // a reporter with nothing to print (onRunEnd only)
    if (r.file) {
      const file = path.resolve(ctx.io.cwd, r.file);
      fs.mkdirSync(path.dirname(file), { recursive: true });
      fs.writeFileSync(file, text.endsWith('\n') ? text : `${text}\n`);
    } else {
      ctx.io.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
    }
  }
}
