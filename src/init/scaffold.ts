import * as fs from 'node:fs';
import * as path from 'node:path';
import { TopasError } from '../errors';
import { GITIGNORE_ENTRIES, SERVER_JS, SMOKE_LUA, luarcJson, topasYaml } from './templates';
import { resolveLuaTypesLibrary } from './lua-types-location';

export type ScaffoldAction = 'created' | 'overwritten' | 'skipped' | 'updated' | 'unchanged';

export interface ScaffoldFile {
  /** relative to the project folder, `/`-separated */
  path: string;
  action: ScaffoldAction;
  /** why it was skipped or what was added */
  detail?: string;
}

export interface ScaffoldResult {
  dir: string;
  app: string;
  files: ScaffoldFile[];
  /** what `.luarc.json` points LuaLS at */
  luaTypes: string;
  next: string[];
}

export interface ScaffoldOptions {
  /** the project folder (the CLI passes io.cwd) */
  dir: string;
  /** overwrite files that already exist */
  force?: boolean;
  /** app name in topas.yaml; default: from the folder name */
  name?: string;
}

const NAME_RE = /^[a-z][a-z0-9-]{0,62}$/;

/** Folder name -> a valid app name (lowercase letters, digits, "-", starting with a letter). */
export function appNameFromDir(dir: string): string {
  const base = path
    .basename(path.resolve(dir))
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^[^a-z]+/, '')
    .replace(/-+$/, '')
    .slice(0, 63)
    .replace(/-+$/, '');
  return NAME_RE.test(base) ? base : 'my-app';
}

/**
 * `topas init`: writes a runnable starting point into `dir`: topas.yaml (one
 * plain-Node service + one PostgreSQL), app/server.js, tests/smoke.lua,
 * .luarc.json for LuaLS, and `.topas/` in .gitignore. Existing files are kept
 * unless `force`; .gitignore is only ever appended to.
 */
export async function scaffoldProject(opts: ScaffoldOptions): Promise<ScaffoldResult> {
  const dir = path.resolve(opts.dir);
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) {
    throw new TopasError('FILE_NOT_FOUND', `${dir}: no such folder`);
  }
  const app = opts.name ?? appNameFromDir(dir);
  if (!NAME_RE.test(app)) {
    throw new TopasError('INVALID_FLAGS', `--name: expected lowercase letters, digits and "-" (starting with a letter, at most 63 characters), got "${app}"`);
  }
  const force = opts.force ?? false;
  const files: ScaffoldFile[] = [];
  const luaTypes = resolveLuaTypesLibrary(dir);

  const writes: Array<[string, string]> = [
    ['topas.yaml', topasYaml(app)],
    ['app/server.js', SERVER_JS],
    ['tests/smoke.lua', SMOKE_LUA],
    ['.luarc.json', luarcJson(luaTypes.library)],
  ];
  for (const [rel, content] of writes) files.push(writeFile(dir, rel, content, force));
  files.push(appendGitignore(dir, GITIGNORE_ENTRIES));
  if (luaTypes.extracted) files.push({ path: luaTypes.library, action: 'updated', detail: 'Lua type definitions for editors' });

  return {
    dir,
    app,
    files,
    luaTypes: luaTypes.library,
    next: ['topas run   # runs every scenario in tests/ (or name them: topas run tests/smoke.lua)', 'topas up   # keep the app running while you write scenarios'],
  };
}

function writeFile(dir: string, rel: string, content: string, force: boolean): ScaffoldFile {
  const abs = path.join(dir, ...rel.split('/'));
  const exists = fs.existsSync(abs);
  if (exists) {
    if (fs.statSync(abs).isDirectory()) return { path: rel, action: 'skipped', detail: 'a folder with that name exists' };
    if (fs.readFileSync(abs, 'utf8') === content) return { path: rel, action: 'unchanged' };
    if (!force) return { path: rel, action: 'skipped', detail: 'exists (--force overwrites)' };
  }
  fs.mkdirSync(path.dirname(abs), { recursive: true });
  writeAtomic(abs, content);
  return { path: rel, action: exists ? 'overwritten' : 'created' };
}

/** Adds the entries .gitignore lacks; never rewrites what is there. */
function appendGitignore(dir: string, entries: string[]): ScaffoldFile {
  const abs = path.join(dir, '.gitignore');
  const exists = fs.existsSync(abs);
  const current = exists ? fs.readFileSync(abs, 'utf8') : '';
  const present = new Set(current.split(/\r?\n/).map((l) => normalizeIgnoreLine(l)));
  const missing = entries.filter((e) => !present.has(normalizeIgnoreLine(e)));
  if (missing.length === 0) return { path: '.gitignore', action: 'unchanged' };
  const sep = current.length > 0 && !current.endsWith('\n') ? '\n' : '';
  const block = `${sep}${current.length > 0 ? '\n' : ''}# topas run records and state\n${missing.join('\n')}\n`;
  fs.appendFileSync(abs, block);
  return { path: '.gitignore', action: exists ? 'updated' : 'created', detail: `added ${missing.join(', ')}` };
}

/** `.topas`, `/.topas/` and `.topas/` all ignore the same folder. */
function normalizeIgnoreLine(line: string): string {
  return line.trim().replace(/^\//, '').replace(/\/$/, '');
}

function writeAtomic(file: string, content: string): void {
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, content);
  fs.renameSync(tmp, file);
}
