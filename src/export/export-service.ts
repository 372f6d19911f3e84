import * as fs from 'node:fs';
import * as path from 'node:path';
import { TopasError, type Problem } from '../errors';
import type { Io } from '../io';
import { BUILTIN_METRICS } from '../load/metrics';
import { resolveLoadPlan, type LoadFlags, type LoadPlan } from '../load/load-plan';
import { isPostmanCollectionFile } from '../postman/collection-load-script';
import { postmanToLua } from '../import/postman-import';
import { parseLua } from './lua-ast';
import { buildFlowModel } from './flow-builder';
import type { Expr, FlowModel, Stmt } from './model';
import { toK6 } from './k6';
import { toLocust } from './locust';
import { toArtillery } from './artillery';
import type { ExportInput, ExportResult, ExportTarget } from './targets';

export interface ExportOptions {
  io: Io;
  target: ExportTarget;
  file: string;
  out?: string;
  baseUrl?: string;
  allowPartial: boolean;
  flags: LoadFlags;
  /** with a Postman collection */
  environment?: string;
}

export interface ExportOutcome {
  exitCode: number;
  /** what was left out, `file:line: what` */
  skipped: string[];
  files: string[];
}

/**
 * `topas export`: reads the scenario's syntax tree (a Postman collection is
 * first turned into a scenario, as `topas import postman` does), computes the
 * effective load plan exactly as `topas load` would (resolveLoadPlan: the
 * script's options with the load flags on top), and prints it for the target.
 */
export async function runExport(opts: ExportOptions): Promise<ExportOutcome> {
  const { io } = opts;
  const abs = path.resolve(io.cwd, opts.file);
  if (!fs.existsSync(abs)) throw new TopasError('FILE_NOT_FOUND', `${opts.file} not found`);
  const rel = path.relative(io.cwd, abs) || opts.file;
  let source: string;
  if (isPostmanCollectionFile(abs)) {
    source = postmanToLua({ collection: abs, environment: opts.environment ? path.resolve(io.cwd, opts.environment) : undefined }).source;
  } else {
    if (opts.environment !== undefined) throw new TopasError('INVALID_FLAGS', `--environment applies to a Postman collection; ${opts.file} is not one`);
    source = fs.readFileSync(abs, 'utf8');
  }
  const { chunk, problems } = parseLua(source, rel);
  if (!chunk) throw new TopasError('LUA_SYNTAX', `${opts.file} does not parse`, { problems });
  const model = buildFlowModel(chunk);
  if (!model.hasIteration) {
    throw new TopasError('INVALID_FLAGS', `${opts.file} defines no iteration(ctx) function with HTTP requests to export`, { hint: 'a load script defines `function iteration(ctx) ... end`' });
  }
  // the same merge of options and flags as `topas load` (and the same INVALID_FLAGS problems)
  // (but max VUs not scaled by this machine's cores: the script runs elsewhere, and the same input exports the same)
  let plan: LoadPlan = resolveLoadPlan(model.options, opts.flags, {}, Number.POSITIVE_INFINITY);
  const serviceProblems = rewriteServiceUrls(model, opts.baseUrl);
  if (serviceProblems.length) {
    throw new TopasError('INVALID_FLAGS', `${opts.file} calls services by name; the exported script needs their address`, {
      problems: serviceProblems.map((p) => ({ path: `${rel}:${p.line}`, message: p.message })),
      hint: 'pass --base-url http://HOST:PORT (the endpoint `topas up` or `topas ps` prints)',
    });
  }
  const skipped = model.skipped.map((s) => `${rel}:${s.line}: ${s.what}`);
  for (const t of plan.thresholds) {
    if (!BUILTIN_METRICS[t.metric]) skipped.push(`${rel}:${model.optionsLine}: threshold ${t.key}: ${t.expr.source} (custom metric; its samples come from Lua that is not exported)`);
  }
  plan = { ...plan, thresholds: plan.thresholds.filter((t) => BUILTIN_METRICS[t.metric]) };
  const outFile = opts.out ? path.resolve(io.cwd, opts.out) : undefined;
  const input: ExportInput = { source: rel, model, plan, skipped, outFile };
  const result: ExportResult = opts.target === 'k6' ? { text: toK6(input), skipped: [] } : opts.target === 'locust' ? toLocust(input) : toArtillery(input);
  const all = [...skipped, ...result.skipped];
  if (all.length && !opts.allowPartial) {
    throw new TopasError('UNTRANSLATABLE', `${opts.file}: ${all.length} part${all.length === 1 ? '' : 's'} of the scenario ha${all.length === 1 ? 's' : 've'} no ${opts.target} equivalent`, {
      problems: all.map(splitProblem),
      hint: 'pass --allow-partial to export the rest, leaving these out (they are listed in the script\'s header)',
    });
  }
  const text = result.skipped.length ? addSkippedToHeader(result.text, result.skipped, opts.target) : result.text;
  const files: string[] = [];
  if (outFile) {
    fs.mkdirSync(path.dirname(outFile), { recursive: true });
    fs.writeFileSync(outFile, text);
    files.push(outFile);
    for (const [name, body] of Object.entries(result.extra ?? {})) {
      const f = path.join(path.dirname(outFile), name);
      fs.writeFileSync(f, body);
      files.push(f);
    }
  } else {
    if (result.extra && Object.keys(result.extra).length) throw new TopasError('INVALID_FLAGS', `the ${opts.target} export writes more than one file; give -o FILE`);
    io.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
  }
  if (all.length) {
    io.stderr.write(`topas: left out of the ${opts.target} script (--allow-partial):\n${all.map((s) => `  ${s}\n`).join('')}`);
  }
  for (const f of files) io.stderr.write(`topas: wrote ${path.relative(io.cwd, f) || f}\n`);
  return { exitCode: 0, skipped: all, files };
}

function splitProblem(s: string): Problem {
  const m = /^(.*?:\d+): ([\s\S]*)$/.exec(s);
  return m ? { path: m[1], message: m[2] } : { path: '', message: s };
}

function addSkippedToHeader(text: string, skipped: string[], target: ExportTarget): string {
  const c = target === 'k6' ? '//' : '#';
  const lines = text.split('\n');
  lines.splice(1, 0, `${c} left out (no ${target} equivalent):`, ...skipped.map((s) => `${c}   ${s}`));
  return lines.join('\n');
}

const SERVICE_URL = /^(https?):\/\/([A-Za-z_][A-Za-z0-9_-]*)(?=[/?#]|$)/;

/**
 * `http://api/users` names service `api`: the exported script cannot resolve
 * it, so its scheme and host become --base-url. Returns the places where a
 * service is named and no --base-url was given.
 */
export function rewriteServiceUrls(model: FlowModel, baseUrl: string | undefined): Array<{ line: number; message: string }> {
  const problems: Array<{ line: number; message: string }> = [];
  const base = baseUrl?.replace(/\/+$/, '');
  if (base !== undefined && !/^https?:\/\/[^/]+/.test(base)) throw new TopasError('INVALID_FLAGS', `--base-url: expected http://HOST[:PORT], got "${baseUrl}"`);
  const fix = (e: Expr, line: number): Expr => {
    switch (e.k) {
      case 'str': {
        const m = SERVICE_URL.exec(e.v);
        if (!m || m[2] === 'localhost') return e;
        if (base === undefined) {
          problems.push({ line, message: `URL ${e.v} names service "${m[2]}"` });
          return e;
        }
        return { k: 'str', v: base + e.v.slice(m[0].length) };
      }
      case 'env':
        return { ...e, dflt: e.dflt && fix(e.dflt, line) };
      case 'concat':
        return { ...e, parts: e.parts.map((p, i) => (i === 0 ? fix(p, line) : p)) };
      case 'bin':
        return e.op === 'or' || e.op === 'and' ? { ...e, l: fix(e.l, line), r: fix(e.r, line) } : e;
      default:
        return e;
    }
  };
  for (const c of model.constants) c.value = fix(c.value, c.line);
  const walk = (stmts: Stmt[]) => {
    for (const st of stmts) {
      if (st.k === 'request') st.url = fix(st.url, st.line);
      else if (st.k === 'local') st.value = fix(st.value, st.line);
      else if (st.k === 'if') {
        walk(st.then);
        walk(st.else);
      } else if (st.k === 'for') walk(st.body);
    }
  };
  walk(model.flow);
  return problems;
}
