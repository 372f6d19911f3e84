import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { TopasError } from '../errors';
import type { Io } from '../io';
import { PRIVATE_FILE_MODE, RunRecordStore, TOPAS_DIR, ensurePrivateDir, type RunRecord } from './run-record';
import type { LogLine } from './scenario-types';
import { selfCommand } from '../util/self-command';
import { findAppSpecFile } from './targets';
import { loadResultLine, recordState } from './record-report';
import type { RunOptions } from './run-service';

/**
 * The states `topas test status` shows (the seed's kctrl vocabulary, plus
 * Partial: a load run that lost a worker and passed on what arrived).
 */
export type DisplayState = 'Pending' | 'Running' | 'Passed' | 'Partial' | 'Failed' | 'Error';

const FINAL = new Set(['passed', 'partial', 'failed', 'error', 'timedOut', 'interrupted']);

/** Where records of runs started from here live: next to the app spec, else cwd. */
export function recordDirFor(io: Io, app?: string): string {
  const spec = findAppSpecFile({ app, cwd: io.cwd });
  return spec ? path.dirname(spec) : io.cwd;
}

export { selfCommand } from '../util/self-command';

/**
 * `topas test schedule --cron EXPR`: validated like `topas run`, then handed
 * to a backend that runs on a schedule by itself (the kubernetes plugin's
 * CronJob); others refuse --cron.
 */
export async function scheduleCron(opts: RunOptions, cron: string): Promise<{ id: string; description: string }> {
  if (!/^\S+(\s+\S+){4}$/.test(cron.trim())) throw new TopasError('INVALID_FLAGS', `--cron: expected five fields (minute hour day month weekday), got "${cron}"`);
  const { checkBackendName, getBackend } = await import('../backends/registry');
  checkBackendName(opts.backend);
  const backend = opts.backend === 'auto' ? undefined : getBackend(opts.backend);
  if (!backend?.scheduleCron) {
    throw new TopasError('INVALID_FLAGS', `--cron: backend ${opts.backend} does not run on a schedule by itself`, { hint: 'use --backend kubernetes (a CronJob), or a scheduler of your own around `topas run`' });
  }
  const { remoteRequestFor } = await import('./run-service');
  const { spec, request } = await remoteRequestFor(opts, new RunRecordStore(recordDirFor(opts.io, opts.app)).createRunId());
  return backend.scheduleCron(spec, request, cron.trim(), { log: (l) => opts.io.stderr.write(`topas: ${l}\n`), processEnv: opts.io.env });
}

/**
 * `topas test schedule`: records a pending run and starts a detached `topas run`
 * for it, returning its id at once. The detached run queues on the app's lock,
 * so two schedules against the same app run one after the other.
 */
export function scheduleRun(opts: { io: Io; runArgv: string[]; app?: string }): { runId: string; dir: string } {
  const dir = recordDirFor(opts.io, opts.app);
  const store = new RunRecordStore(dir);
  const runId = store.createRunId();
  store.writeRun(runId, { runId, kind: 'run', state: 'pending', startedAt: new Date(opts.io.now()).toISOString(), argv: opts.runArgv, results: [], durationMs: 0 });
  const [cmd, ...pre] = selfCommand();
  const outFile = path.join(store.ensureRunDir(runId), 'runner.out');
  const out = fs.openSync(outFile, 'a', PRIVATE_FILE_MODE);
  const child = spawn(cmd, [...pre, 'run', ...opts.runArgv, '--run-id', runId, '--queue'], {
    cwd: opts.io.cwd,
    detached: true,
    stdio: ['ignore', out, out],
    env: { ...opts.io.env, TOPAS_SCHEDULED: '1' },
  });
  fs.closeSync(out);
  child.unref();
  const record = store.readRun(runId);
  store.writeRun(runId, { ...record, runnerPid: child.pid });
  return { runId, dir };
}

export function displayState(record: RunRecord): DisplayState {
  const alive = (pid: unknown) => {
    if (typeof pid !== 'number') return true;
    try {
      process.kill(pid, 0);
      return true;
    } catch (err) {
      return (err as NodeJS.ErrnoException).code === 'EPERM';
    }
  };
  switch (recordState(record)) {
    case 'pending':
      return alive(record.runnerPid) ? 'Pending' : 'Error';
    case 'running':
      return alive(record.runnerPid ?? record.pid) ? 'Running' : 'Error';
    case 'passed':
      return 'Passed';
    case 'partial':
      return 'Partial';
    case 'failed':
    case 'timedOut':
      return 'Failed';
    default:
      return 'Error';
  }
}

export interface RunSummary {
  runId: string;
  state: DisplayState;
  result: string;
  app?: string;
  startedAt?: string;
  durationMs?: number;
  targets?: unknown;
}

function summarize(record: RunRecord): RunSummary {
  const results = record.results ?? [];
  const passed = results.filter((r) => r.state === 'passed').length;
  const state = displayState(record);
  const result =
    state === 'Pending' || state === 'Running'
      ? ''
      : state === 'Error' && (record.state === 'pending' || record.state === 'running')
        ? 'runner process died'
        : record.kind === 'load'
          ? loadResultLine(record)
          : `${record.state}: ${passed}/${results.length} scenario(s) passed${record.error ? ` — ${record.error.message}` : ''}`;
  return { runId: record.runId, state, result, app: record.app, startedAt: record.startedAt, durationMs: record.durationMs, targets: record.targets };
}

export function runStatus(opts: { io: Io; id?: string; app?: string; limit?: number }): RunSummary[] {
  const store = new RunRecordStore(recordDirFor(opts.io, opts.app));
  if (opts.id) return [summarize(store.readRun(opts.id))];
  return store
    .listRuns()
    .slice(0, opts.limit ?? 20)
    .map((id) => {
      try {
        return summarize(store.readRun(id));
      } catch {
        return undefined;
      }
    })
    .filter((s): s is RunSummary => s !== undefined);
}

export function formatLogLine(l: LogLine): string {
  const time = new Date(l.ts).toISOString().slice(11, 23);
  return `${time} [${l.source}] ${l.level === 'info' ? '' : `${l.level.toUpperCase()} `}${l.message}`;
}

/**
 * `topas test logs <id> [--follow]`: prints the lines written so far; with
 * follow, keeps printing new lines as they are appended until the run ends.
 */
export async function streamLogs(opts: { io: Io; id: string; app?: string; follow: boolean; signal?: AbortSignal; pollMs?: number; write: (line: LogLine) => void }): Promise<RunRecord> {
  const store = new RunRecordStore(recordDirFor(opts.io, opts.app));
  let record = store.readRun(opts.id);
  const file = store.logPath(opts.id);
  let offset = 0;
  let partial = '';
  const drain = () => {
    let fd: number;
    try {
      fd = fs.openSync(file, 'r');
    } catch {
      return;
    }
    try {
      const size = fs.fstatSync(fd).size;
      if (size <= offset) return;
      const buf = Buffer.alloc(size - offset);
      fs.readSync(fd, buf, 0, buf.length, offset);
      offset = size;
      const text = partial + buf.toString('utf8');
      const lines = text.split('\n');
      partial = lines.pop() ?? '';
      for (const l of lines) {
        if (!l.trim()) continue;
        try {
          const line = JSON.parse(l) as LogLine;
          if (line.source !== 'event') opts.write(line);
        } catch {
          // damaged line: skip it, keep following
        }
      }
    } finally {
      fs.closeSync(fd);
    }
  };
  drain();
  while (opts.follow && !opts.signal?.aborted) {
    record = store.readRun(opts.id);
    const done = FINAL.has(String(record.state)) || displayState(record) === 'Error';
    drain();
    if (done) break;
    await new Promise((r) => setTimeout(r, opts.pollMs ?? 200));
  }
  return record;
}

/**
 * One run at a time per app for scheduled runs: an exclusive lock file holding
 * the owner's pid; a lock whose owner died is taken over.
 */
export async function acquireAppLock(dir: string, app: string, signal?: AbortSignal): Promise<() => void> {
  const lockDir = path.join(dir, TOPAS_DIR, 'locks');
  ensurePrivateDir(lockDir);
  const file = path.join(lockDir, `${app}.lock`);
  for (;;) {
    // the lock appears with its owner's pid already in it (link is atomic and fails
    // when the lock exists): a waiter must never read an empty lock and take it for stale
    const tmp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}`;
    fs.writeFileSync(tmp, String(process.pid), { mode: PRIVATE_FILE_MODE });
    try {
      fs.linkSync(tmp, file);
      fs.rmSync(tmp, { force: true });
      return () => {
        try {
          if (fs.readFileSync(file, 'utf8') === String(process.pid)) fs.unlinkSync(file);
        } catch {
          // already gone
        }
      };
    } catch (err) {
      fs.rmSync(tmp, { force: true });
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    let owner = NaN;
    let raw = '';
    try {
      raw = fs.readFileSync(file, 'utf8');
      owner = Number(raw);
    } catch {
      continue;
    }
    let ownerAlive = Number.isInteger(owner) && owner > 0;
    if (ownerAlive) {
      try {
        process.kill(owner, 0);
      } catch (e) {
        ownerAlive = (e as NodeJS.ErrnoException).code === 'EPERM';
      }
    }
    if (!ownerAlive) {
      try {
        // only the stale lock we read: another waiter may have replaced it meanwhile
        if (fs.readFileSync(file, 'utf8') === raw) fs.unlinkSync(file);
      } catch {
        // another waiter took it over first
      }
      continue;
    }
    if (signal?.aborted) throw new TopasError('INTERRUPTED', `interrupted while queued behind run of pid ${owner}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}
