import * as fs from 'node:fs';
import * as path from 'node:path';
import type { RemoteRunRequest } from '../backends/backend';
import { TopasError } from '../errors';

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
}

export function remoteRunRequest(input: RemoteRunInput, log: (line: string) => void): RemoteRunRequest {
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
    for (const f of walk(dir, 4)) {
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
    targets: input.targets.map((t) => path.relative(input.namesDir, t).split(path.sep).join('/')),
    parallel: input.parallel,
    ...(input.workers !== undefined ? { workers: input.workers } : {}),
    timeoutMs: input.timeoutMs,
    continueOnFailure: input.continueOnFailure,
    env: input.env,
  };
}

/** Regular files under `dir`, at most `depth` folders down, skipping dot folders and node_modules. */
function* walk(dir: string, depth: number): Generator<string> {
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return;
  }
  for (const e of entries.sort((a, b) => a.name.localeCompare(b.name))) {
    const full = path.join(dir, e.name);
    if (e.isFile()) yield full;
    else if (e.isDirectory() && depth > 0 && !SKIP_DIRS.has(e.name) && !e.name.startsWith('.')) yield* walk(full, depth - 1);
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
