import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { TopasError } from '../errors';
import type { SutState } from '../backends/backend';
import type { RunReport } from '../reporters/run-report';
import { maskedJson, maskSecrets } from '../spec/secrets';
import type { LogLine } from './scenario-types';

/**
 * Run records live in `<dir>/.topas/runs/<id>/`: `run.json` (written atomically,
 * so a crash never leaves half a record) and `log.ndjson` (one JSON line per
 * log line, appended). `<dir>` is the folder of the app spec. Both are masked
 * as they are written; everything under `.topas/` is private to the user
 * (files 0600, folders 0700): state.json holds real credentials.
 */

/**
 * What run.json holds: the report (partial while the run is pending or running)
 * plus whatever the run orchestration adds (spec, kind, targets, load metrics...).
 * The layout is versioned (`schemaVersion`) and documented in docs/run-record.md;
 * src/run/record-report.ts turns any version into a RunReport.
 */
export interface RunRecord extends Partial<Omit<RunReport, 'kind' | 'load' | 'sut' | 'logs'>> {
  runId: string;
  state: RunReport['state'];
  [extra: string]: unknown;
}

export const TOPAS_DIR = '.topas';
export const PRIVATE_FILE_MODE = 0o600;
export const PRIVATE_DIR_MODE = 0o700;

/**
 * Creates `dir` and makes it and every folder between it and the `.topas`
 * above it 0700 (also ones an older topas made 0755). Folders above `.topas`
 * are the user's and stay as they are.
 */
export function ensurePrivateDir(dir: string): void {
  const abs = path.resolve(dir);
  fs.mkdirSync(abs, { recursive: true, mode: PRIVATE_DIR_MODE });
  const parts = abs.split(path.sep);
  const top = parts.lastIndexOf(TOPAS_DIR);
  const chain = top < 0 ? [] : parts.slice(top).map((_, i) => parts.slice(0, top + i + 1).join(path.sep));
  for (const d of chain) {
    try {
      if ((fs.statSync(d).mode & 0o777) !== PRIVATE_DIR_MODE) fs.chmodSync(d, PRIVATE_DIR_MODE);
    } catch {
      // not ours to change (another user's folder): leave it
    }
  }
}

const ID_RE = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

let lastIdMs = 0;
let sameMsCounter = 0;

function pad(n: number, width: number): string {
  return String(n).padStart(width, '0');
}

/**
 * `20250131-120501-123-0-a1b2c3`: UTC time to the millisecond, a counter for ids
 * made in the same millisecond by this process, and a random suffix against
 * other processes. Sorting ids as strings sorts runs by creation time.
 */
export function createRunId(nowMs: number = Date.now()): string {
  if (nowMs === lastIdMs) sameMsCounter++;
  else {
    lastIdMs = nowMs;
    sameMsCounter = 0;
  }
  const d = new Date(nowMs);
  const date = `${d.getUTCFullYear()}${pad(d.getUTCMonth() + 1, 2)}${pad(d.getUTCDate(), 2)}`;
  const time = `${pad(d.getUTCHours(), 2)}${pad(d.getUTCMinutes(), 2)}${pad(d.getUTCSeconds(), 2)}`;
  // The counter is base36 with a length prefix so that "z" < "10" stays ordered.
  const counter = sameMsCounter.toString(36);
  return `${date}-${time}-${pad(d.getUTCMilliseconds(), 3)}-${counter.length}${counter}-${randomBytes(3).toString('hex')}`;
}

/**
 * Write `data` to `file` so that readers see the old content or the new, never
 * a mix: temp file in the same folder, fsync, rename over, fsync the folder.
 * Synchronous on purpose: a record written just before exit must be on disk,
 * and two writes of one record cannot overtake each other.
 */
export function writeFileAtomic(file: string, data: string): void {
  const dir = path.dirname(file);
  ensurePrivateDir(dir);
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  let fd: number | undefined;
  try {
    fd = fs.openSync(tmp, 'wx', PRIVATE_FILE_MODE);
    fs.writeFileSync(fd, data, 'utf8');
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = undefined;
    fs.renameSync(tmp, file);
  } catch (err) {
    if (fd !== undefined) fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw err;
  }
  // Make the rename itself durable; not every filesystem lets a folder be fsynced.
  try {
    const dfd = fs.openSync(dir, 'r');
    try {
      fs.fsyncSync(dfd);
    } finally {
      fs.closeSync(dfd);
    }
  } catch {
    // best effort
  }
}

function readJson<T>(file: string): T | undefined {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  return JSON.parse(text) as T;
}

export class RunRecordStore {
  /** `<dir>/.topas/runs` */
  readonly runsDir: string;
  /** applied to everything written (default: the process-wide registry, which run and load fill with the spec's secrets) */
  private readonly mask: (s: string) => string;
  private readonly privateDirs = new Set<string>();

  constructor(
    readonly dir: string,
    opts: { mask?: (s: string) => string } = {},
  ) {
    this.runsDir = path.join(dir, TOPAS_DIR, 'runs');
    this.mask = opts.mask ?? maskSecrets;
  }

  createRunId(nowMs?: number): string {
    return createRunId(nowMs);
  }

  runDir(id: string): string {
    if (!ID_RE.test(id)) throw new TopasError('INVALID_FLAGS', `invalid run id "${id}"`, { hint: 'list runs with `topas test status`' });
    return path.join(this.runsDir, id);
  }

  runPath(id: string): string {
    return path.join(this.runDir(id), 'run.json');
  }

  logPath(id: string): string {
    return path.join(this.runDir(id), 'log.ndjson');
  }

  /** Secrets masked in every string and key before encoding, and in the JSON text after. */
  writeRun(id: string, run: RunRecord): void {
    writeFileAtomic(this.runPath(id), maskedJson(run, this.mask, 2) + '\n');
  }

  /** The run's folder, private; checked once per store. */
  ensureRunDir(id: string): string {
    const dir = this.runDir(id);
    if (!this.privateDirs.has(dir)) {
      ensurePrivateDir(dir);
      this.privateDirs.add(dir);
    }
    return dir;
  }

  /** Throws FILE_NOT_FOUND when there is no such run (or it has no run.json yet). */
  readRun(id: string): RunRecord {
    const run = readJson<RunRecord>(this.runPath(id));
    if (run === undefined) {
      throw new TopasError('FILE_NOT_FOUND', `no run "${id}" in ${this.runsDir}`, { hint: 'list runs with `topas test status`' });
    }
    return run;
  }

  hasRun(id: string): boolean {
    return fs.existsSync(this.runPath(id));
  }

  /** Run ids, newest first. */
  listRuns(): string[] {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(this.runsDir, { withFileTypes: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    return entries
      .filter((e) => e.isDirectory() && ID_RE.test(e.name))
      .map((e) => e.name)
      .sort()
      .reverse();
  }

  /**
   * Append one line to log.ndjson, with secrets masked (every field, before and
   * after encoding). The line is a single write to a file opened with O_APPEND,
   * so lines from other writers (threads, processes) land before or after it,
   * never inside it.
   */
  appendLog(id: string, line: LogLine): void {
    const file = this.logPath(id);
    const data = maskedJson(line, this.mask) + '\n';
    this.ensureRunDir(id);
    fs.appendFileSync(file, data, { encoding: 'utf8', mode: PRIVATE_FILE_MODE });
  }

  /** The log lines written so far; a partly written last line (a writer mid-append) is left out. */
  readLog(id: string): LogLine[] {
    let text: string;
    try {
      text = fs.readFileSync(this.logPath(id), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    const out: LogLine[] = [];
    const lines = text.split('\n');
    lines.pop(); // after the last '\n': empty, or a line still being written
    for (const l of lines) {
      if (l.trim() === '') continue;
      try {
        out.push(JSON.parse(l) as LogLine);
      } catch {
        // a damaged line is skipped rather than hiding the rest of the log
      }
    }
    return out;
  }
}

export function stateFilePath(dir: string): string {
  return path.join(dir, TOPAS_DIR, 'state.json');
}

/** `<dir>/.topas/state.json`: the SUT `topas up` left running, for later commands to attach to. */
export function writeStateFile(dir: string, state: SutState): void {
  writeFileAtomic(stateFilePath(dir), JSON.stringify(state, null, 2) + '\n');
}

/**
 * Record a change of the kept SUT that a run attached to it made, but only while
 * state.json still names that SUT: after a `topas down` (or a new `topas up`)
 * in between, a run that was attached must not bring back a state of its own.
 */
export function updateStateFile(dir: string, state: SutState): boolean {
  let current: SutState | undefined;
  try {
    current = readStateFile(dir);
  } catch {
    current = undefined;
  }
  if (current?.runId !== state.runId || current.backend !== state.backend) return false;
  writeStateFile(dir, state);
  return true;
}

export function readStateFile(dir: string): SutState | undefined {
  return readJson<SutState>(stateFilePath(dir));
}

export function removeStateFile(dir: string): void {
  fs.rmSync(stateFilePath(dir), { force: true });
}
