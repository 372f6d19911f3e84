import * as fs from 'node:fs';
import * as path from 'node:path';
import type { RemoteGitSource, RemoteRunRequest } from '../backends/backend';
import { TopasError } from '../errors';
import { isHttpGitUrl, splitGitCredentials, type GitSource } from './git-source';

/**
 * What a runner next to a SUT that this machine does not reach (a cluster)
 * needs: the files of the run, one root for all of them, and the run's
 * targets and settings. The explicit files (app spec, scenarios, playbooks
 * and their scripts) always go; files next to them that scenarios may
 * require or read (Lua modules, data files) go while they fit, because the
 * request travels through an API server object (about 1 MiB at most).
 */

const SUPPORT_EXTENSIONS = new Set(['.lua', '.json', '.csv', '.txt', '.yaml', '.yml', '.proto', '.sql', '.ndjson', '.html', '.xml']);
const SKIP_DIRS = new Set(['node_modules', '.git', '.topas']);
/** the request's files together; an object in etcd holds 1.5 MiB, base64 grows a third */
export const REMOTE_FILES_MAX_BYTES = 700 * 1024;
const MAX_FILES = 400;

export interface RemoteRunInput {
  runId: string;
  /** what scenario names are relative to */
  namesDir: string;
  specFile: string;
  /** scenario files, playbooks and the scripts of their roles (absolute) */
  files: string[];
  /** scenario files and playbooks as the run resolved them (absolute) */
  targets: string[];
  parallel: number;
  workers?: number;
  timeoutMs: number;
  continueOnFailure: boolean;
  env: Record<string, string>;
  /** the run's Git source as this machine fetched it */
  git?: RemoteGitInput;
}

export interface RemoteGitInput {
  source: GitSource;
  commit: string;
  /** the checkout (absolute) */
  dir: string;
  /** the targets as given on the command line, relative to `--git-path` */
  targetArgs: string[];
  /** the command's environment: TOPAS_GIT_TOKEN */
  env: NodeJS.ProcessEnv;
}

/** The repository's folder in a request whose runner fetches it, and the app spec's when it lies outside. */
const REPO_DIR = 'repo';
const APP_DIR = 'app';

export function remoteRunRequest(input: RemoteRunInput, log: (line: string) => void): RemoteRunRequest {
  const git = input.git && gitRequest(input, input.git);
  if (git) return git;
  const explicit = [...new Set([input.specFile, ...input.files].map((f) => path.resolve(f)))];
  const chosen = new Map<string, Buffer>();
  let bytes = 0;
  for (const f of explicit) {
    const content = fs.readFileSync(f);
    chosen.set(f, content);
    bytes += content.length;
  }
  if (bytes > REMOTE_FILES_MAX_BYTES) {
    throw new TopasError('INVALID_FLAGS', `the scenarios and app spec take ${Math.round(bytes / 1024)} KiB; a run on this backend carries at most ${REMOTE_FILES_MAX_BYTES / 1024} KiB of files`, {
      hint: 'run fewer or smaller scenarios at once',
    });
  }
  const left: string[] = [];
  // next to the scenarios, not next to the app spec (a project's root holds much else)
  for (const dir of [...new Set(input.files.map((f) => path.dirname(path.resolve(f))))]) {
    for (const f of walkRunFiles(dir, 4)) {
      if (chosen.has(f) || !SUPPORT_EXTENSIONS.has(path.extname(f))) continue;
      const size = fs.statSync(f).size;
      if (bytes + size > REMOTE_FILES_MAX_BYTES || chosen.size >= MAX_FILES) {
        left.push(f);
        continue;
      }
      chosen.set(f, fs.readFileSync(f));
      bytes += size;
    }
  }
  if (left.length) log(`${left.length} file(s) next to the scenarios do not fit into the run and stay behind (first: ${left[0]})`);
  const root = commonDir([path.resolve(input.namesDir), ...[...chosen.keys()].map((f) => path.dirname(f))]);
  const rel = (f: string) => path.relative(root, f).split(path.sep).join('/');
  return {
    runId: input.runId,
    files: [...chosen].map(([f, content]) => ({ path: rel(f), content })),
    cwd: rel(path.resolve(input.namesDir)) || '.',
    specFile: rel(path.resolve(input.specFile)),
    ...runSettings(input),
  };
}

/**
 * What a request says of the run besides its files and where they lie: the
 * same whether the files travel or the runner fetches them (spread after the
 * paths, so the request's keys keep their order).
 */
function runSettings(input: RemoteRunInput): Pick<RemoteRunRequest, 'targets' | 'parallel' | 'workers' | 'timeoutMs' | 'continueOnFailure' | 'env'> {
  return {
    targets: input.targets.map((t) => path.relative(input.namesDir, t).split(path.sep).join('/')),
    parallel: input.parallel,
    ...(input.workers !== undefined ? { workers: input.workers } : {}),
    timeoutMs: input.timeoutMs,
    continueOnFailure: input.continueOnFailure,
    env: input.env,
  };
}

/**
 * An http(s) Git source: the runner fetches the repository itself (the whole
 * of it, whatever its size), so only an app spec outside it travels as a file.
 * The checkout goes to `repo/`, an outside spec to `app/`. Undefined when the
 * run reaches outside the checkout otherwise (a target given as an absolute
 * path): then the files travel as for any run.
 */
export function gitRequest(input: RemoteRunInput, git: RemoteGitInput): RemoteRunRequest | undefined {
  if (!isHttpGitUrl(git.source.url)) return undefined;
  const repo = path.resolve(git.dir);
  const inRepo = (f: string) => path.resolve(f) === repo || path.resolve(f).startsWith(repo + path.sep);
  const specAbs = path.resolve(input.specFile);
  if (!input.files.every(inRepo) || !inRepo(input.namesDir)) return undefined;
  // the targets as given, relative to the repository's root: resolved again by a firing at a newer commit
  const targets: string[] = [];
  for (const arg of git.targetArgs) {
    const t = path.posix.normalize(path.posix.join((git.source.path ?? '.').split(path.sep).join('/'), arg.split(path.sep).join('/')));
    if (path.posix.isAbsolute(t) || t === '..' || t.startsWith('../')) return undefined;
    targets.push(t);
  }
  const posix = (p: string) => p.split(path.sep).join('/');
  const cwd = path.posix.join(REPO_DIR, posix(path.relative(repo, input.namesDir)) || '.');
  const files: RemoteRunRequest['files'] = [];
  let specFile: string;
  if (inRepo(specAbs)) specFile = path.posix.join(REPO_DIR, posix(path.relative(repo, specAbs)));
  else {
    specFile = `${APP_DIR}/${path.basename(specAbs)}`;
    files.push({ path: specFile, content: fs.readFileSync(specAbs) });
  }
  const bytes = files.reduce((n, f) => n + f.content.length, 0);
  if (bytes > REMOTE_FILES_MAX_BYTES) throw new TopasError('INVALID_FLAGS', `the app spec takes ${Math.round(bytes / 1024)} KiB; a run on this backend carries at most ${REMOTE_FILES_MAX_BYTES / 1024} KiB of files`);
  const { url, auth } = splitGitCredentials(git.source.url, git.env);
  const remoteGit: RemoteGitSource = {
    url,
    ...(git.source.ref !== undefined ? { ref: git.source.ref } : {}),
    commit: git.commit,
    ...(git.source.path !== undefined ? { path: git.source.path } : {}),
    dir: REPO_DIR,
    // relative to cwd, as `targets` are
    targets: targets.map((t) => path.posix.relative(cwd, path.posix.join(REPO_DIR, t)) || '.'),
    ...(auth ? { auth } : {}),
  };
  return {
    runId: input.runId,
    files,
    cwd,
    specFile,
    ...runSettings(input),
    git: remoteGit,
  };
}

/** Regular files under `dir`, at most `depth` folders down, skipping dot folders and node_modules (links are not followed): what may go with a run. */
export function* walkRunFiles(dir: string, depth: number): Generator<string> {
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return;
  }
  for (const e of entries.sort((a, b) => a.name.localeCompare(b.name))) {
    const full = path.join(dir, e.name);
    if (e.isFile()) yield full;
    else if (e.isDirectory() && depth > 0 && !SKIP_DIRS.has(e.name) && !e.name.startsWith('.')) yield* walkRunFiles(full, depth - 1);
  }
}

function commonDir(dirs: string[]): string {
  let common = dirs[0];
  for (const d of dirs.slice(1)) {
    while (common !== path.dirname(common) && d !== common && !d.startsWith(common.endsWith(path.sep) ? common : common + path.sep)) common = path.dirname(common);
  }
  return common;
}

/** The file tree of a request under `dir` (the runner's side); returns the folder to run in. */
export function writeRemoteFiles(dir: string, files: Array<{ path: string; content: Buffer }>): void {
  for (const f of files) {
    const target = path.resolve(dir, f.path);
    // a request names paths inside its root only
    if (!target.startsWith(path.resolve(dir) + path.sep)) throw new TopasError('INVALID_FLAGS', `remote run: file path ${f.path} leaves the run's folder`);
    fs.mkdirSync(path.dirname(target), { recursive: true });
    fs.writeFileSync(target, f.content);
  }
}
