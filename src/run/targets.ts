import * as fs from 'node:fs';
import * as path from 'node:path';
import { globSync } from 'tinyglobby';
import { TopasError, type Problem } from '../errors';

export interface ResolvedTargets {
  luaFiles: string[];
  playbooks: string[];
}

/**
 * `topas run` accepts files, folders and globs. A folder means every `*.lua`
 * beneath it; a glob is expanded relative to cwd. Order is kept as given (then
 * sorted within a folder or glob) so reports are stable. Every unusable target is
 * reported at once.
 */
export function resolveTargets(targets: string[], cwd: string): ResolvedTargets {
  const problems: Problem[] = [];
  const luaFiles: string[] = [];
  const playbooks: string[] = [];
  const seen = new Set<string>();
  const add = (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    if (file.endsWith('.lua')) luaFiles.push(file);
    else playbooks.push(file);
  };
  for (const t of targets) {
    const abs = path.resolve(cwd, t);
    let stat: fs.Stats | undefined;
    try {
      stat = fs.statSync(abs);
    } catch {
      stat = undefined;
    }
    if (stat?.isDirectory()) {
      const found = globSync('**/*.lua', { cwd: abs, absolute: true, ignore: ['**/node_modules/**', '**/.topas/**', '**/lib/**'] }).sort();
      if (found.length === 0) problems.push({ path: t, message: 'folder holds no .lua scenario' });
      found.forEach(add);
    } else if (stat?.isFile()) {
      if (!/\.(lua|ya?ml)$/.test(abs)) problems.push({ path: t, message: 'expected a .lua scenario, a playbook .yaml, a folder or a glob' });
      else add(abs);
    } else if (/[*?[{]/.test(t)) {
      const found = globSync(t, { cwd, absolute: true, ignore: ['**/node_modules/**'] })
        .filter((f) => /\.(lua|ya?ml)$/.test(f))
        .sort();
      if (found.length === 0) problems.push({ path: t, message: 'glob matched no scenario' });
      found.forEach(add);
    } else {
      problems.push({ path: t, message: 'no such file or folder' });
    }
  }
  if (problems.length > 0) {
    throw new TopasError('FILE_NOT_FOUND', `${problems.length} scenario target(s) cannot be used`, { problems });
  }
  return { luaFiles, playbooks };
}

/**
 * The app spec: `--app`, else `topas.yaml` in cwd, else the nearest
 * `topas.yaml` above the first scenario.
 */
export function findAppSpecFile(opts: { app?: string; cwd: string; near?: string }): string | undefined {
  if (opts.app) {
    const abs = path.resolve(opts.cwd, opts.app);
    if (!fs.existsSync(abs)) throw new TopasError('FILE_NOT_FOUND', `app spec ${opts.app} does not exist`, { hint: 'pass --app path/to/topas.yaml, or run `topas init`' });
    return abs;
  }
  const starts = [opts.cwd];
  if (opts.near) starts.push(path.dirname(path.resolve(opts.cwd, opts.near)));
  for (const start of starts) {
    let dir = start;
    for (let i = 0; i < 32; i++) {
      for (const name of ['topas.yaml', 'topas.yml']) {
        const candidate = path.join(dir, name);
        if (fs.existsSync(candidate)) return candidate;
      }
      const parent = path.dirname(dir);
      if (parent === dir) break;
      dir = parent;
      // Walking up from cwd stops at cwd itself: only a scenario's folder walks up.
      if (start === opts.cwd) break;
    }
  }
  return undefined;
}

/**
 * A bare `topas run`: like vitest or Playwright running their default folder,
 * it runs `tests/` next to the app spec (--app, or topas.yaml here).
 */
export function defaultTargets(opts: { app?: string; cwd: string }): string[] {
  const specFile = findAppSpecFile({ app: opts.app, cwd: opts.cwd });
  if (!specFile) {
    throw new TopasError('INVALID_FLAGS', 'give at least one scenario file, playbook, folder or glob', {
      hint: 'a bare `topas run` runs tests/ next to a topas.yaml; there is no topas.yaml here (`topas init` makes one)',
    });
  }
  const testsDir = path.join(path.dirname(specFile), 'tests');
  if (!fs.existsSync(testsDir) || !fs.statSync(testsDir).isDirectory()) {
    throw new TopasError('FILE_NOT_FOUND', `${path.relative(opts.cwd, testsDir) || 'tests'}: no such folder`, {
      hint: 'a bare `topas run` runs tests/ next to the app spec; name the scenarios to run instead',
    });
  }
  return [testsDir];
}
