import * as fs from 'node:fs';
import * as path from 'node:path';

/**
 * Where a scenario's own files come from: `require("lib.auth")` (Lua modules
 * of the project) and `open(path)` / `data.csv(path)` (data files). Both are
 * resolved against the scenario's folder and may never leave the project
 * folder, symlinks included (a Git-sourced scenario must not read the
 * machine's files).
 */
export interface ProjectPaths {
  /** absolute path of the scenario or load script */
  file: string;
  /** chunk names are relative to it */
  baseDir: string;
  /** the project folder (the Git checkout's root for --git runs); baseDir if unset */
  rootDir?: string;
}

/** The folder nothing may leave: rootDir, or the scenario's own folder when the scenario lies outside it. */
export function projectRoot(p: ProjectPaths): string {
  const root = path.resolve(p.rootDir ?? p.baseDir);
  return isInside(root, p.file) ? root : path.dirname(path.resolve(p.file));
}

function isInside(dir: string, file: string): boolean {
  const rel = path.relative(dir, file);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

// the project root, real path, per root: realpath is a few syscalls and every VU asks
const realRoots = new Map<string, string>();
function realRoot(root: string): string {
  let r = realRoots.get(root);
  if (r === undefined) {
    r = fs.realpathSync(root);
    realRoots.set(root, r);
  }
  return r;
}

/** A dotted module name: words of letters, digits, `_` and `-`. */
const MODULE_NAME = /^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*)*$/;

export interface LibModule {
  /** absolute real path */
  file: string;
  /** chunk name (relative to baseDir, forward slashes): error locations use it */
  chunk: string;
  source: string;
}

const sourceCache = new Map<string, { mtimeMs: number; size: number; source: string }>();

/** Candidate files for a module name, in order: the scenario's folder, then the project root. */
function candidates(name: string, p: ProjectPaths): string[] {
  const rel = name.split('.').join(path.sep);
  const dirs = [path.dirname(path.resolve(p.file)), projectRoot(p)];
  const out: string[] = [];
  for (const d of dirs) {
    for (const f of [`${rel}.lua`, path.join(rel, 'init.lua')]) {
      const c = path.join(d, f);
      if (!out.includes(c)) out.push(c);
    }
  }
  return out;
}

function shown(file: string, p: ProjectPaths): string {
  const rel = path.relative(p.baseDir, file);
  return (rel && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel : file).split(path.sep).join('/');
}

/**
 * Finds and reads the Lua file behind `require(name)`; throws a message
 * meant for the script's author when the name is malformed, the file is
 * missing, or it resolves outside the project folder.
 */
export function resolveLibModule(name: string, p: ProjectPaths, builtins: string[] = []): LibModule {
  if (!MODULE_NAME.test(name)) {
    throw new Error(
      `require(${JSON.stringify(name)}): not a module name; give dotted words relative to the scenario's folder (require("lib.auth") loads lib/auth.lua), never a path: modules cannot leave the project folder`,
    );
  }
  const root = projectRoot(p);
  const tried = candidates(name, p);
  for (const c of tried) {
    let st: fs.Stats;
    try {
      st = fs.statSync(c);
    } catch {
      continue;
    }
    if (!st.isFile()) continue;
    const real = fs.realpathSync(c);
    if (!isInside(realRoot(root), real)) {
      throw new Error(`require(${JSON.stringify(name)}): ${shown(c, p)} leads to ${real}, outside the project folder ${root}; modules cannot leave it`);
    }
    const hit = sourceCache.get(real);
    if (hit && hit.mtimeMs === st.mtimeMs && hit.size === st.size) return { file: real, chunk: shown(c, p), source: hit.source };
    const source = fs.readFileSync(real, 'utf8');
    sourceCache.set(real, { mtimeMs: st.mtimeMs, size: st.size, source });
    return { file: real, chunk: shown(c, p), source };
  }
  const files = [...new Set(tried.map((c) => shown(c, p)))].join(', ');
  throw new Error(`module '${name}' not found (available: ${[...builtins, 'data'].join(', ')}; no project file ${files})`);
}

/**
 * The Lua text a module is compiled from: its source as the body of a
 * function taking the scenario's _ENV, all on the module's line 1 so line
 * numbers stay the file's. Compiled once per engine, called once per
 * scenario: each scenario gets a module instance of its own.
 */
export function libChunkText(source: string): string {
  const body = source.startsWith('#') ? `--${source}` : source;
  return `return function(_ENV, ...) ${body}\nend`;
}

/** Literal `require("x.y")` names in a Lua source (what the syntax check follows). */
export function literalRequires(source: string): string[] {
  const names = new Set<string>();
  const re = /\brequire\s*\(?\s*(["'])([A-Za-z0-9_.-]+)\1/g;
  for (let m = re.exec(source); m; m = re.exec(source)) names.add(m[2]);
  return [...names];
}

/**
 * A data file named by a script: relative to the scenario's folder, real
 * path inside the project folder. Returns the real path.
 */
export function resolveDataFile(what: string, file: unknown, p: ProjectPaths): string {
  if (typeof file !== 'string' || file === '') throw new Error(`${what}: give the path of a file, relative to the scenario's folder`);
  const root = projectRoot(p);
  const abs = path.resolve(path.dirname(path.resolve(p.file)), file);
  if (!isInside(root, abs)) throw new Error(`${what}: ${file} is outside the project folder ${root}; data files must be inside it`);
  let real: string;
  try {
    real = fs.realpathSync(abs);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new Error(`${what}: ${shown(abs, p)}: ${code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
  }
  if (!isInside(realRoot(root), real)) throw new Error(`${what}: ${file} leads to ${real}, outside the project folder ${root}; data files must be inside it`);
  if (!fs.statSync(real).isFile()) throw new Error(`${what}: ${shown(abs, p)} is not a file`);
  return real;
}
