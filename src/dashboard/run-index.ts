import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadResultLine, recordState } from '../run/record-report';
import { RunRecordStore, TOPAS_DIR, writeFileAtomic, type RunRecord } from '../run/run-record';
import { displayState, type DisplayState } from '../run/schedule-service';

/**
 * What the dashboard lists of one stored run: a few hundred bytes taken from
 * its run.json once, and kept until the file changes (its mtime or size).
 * Listing 1,000 runs is then a readdir, 1,000 stats and a filter, instead of
 * parsing every record (a load run's record holds its histograms).
 */
export interface RunRow {
  runId: string;
  kind: 'run' | 'load';
  /** as stored: pending, running, passed, partial, failed, error, timedOut, interrupted */
  rawState: string;
  app?: string;
  /** the test: the scenario targets of a run, the script of a load run */
  name: string;
  startedAt?: string;
  /** epoch ms of startedAt (NaN when absent) */
  startedMs: number;
  durationMs?: number;
  exitCode?: number;
  /** `test status`'s RESULT column */
  result: string;
  pid?: number;
  runnerPid?: number;
}

/** A row with its state as `test status` shows it (a pending or running run whose process died is Error). */
export interface ListedRun extends RunRow {
  state: DisplayState;
}

export interface RunFilter {
  /** a display state, lower case: pending, running, passed, partial, failed, error */
  state?: string;
  /** substring of the test name, the app or the run id (case-insensitive) */
  name?: string;
  kind?: 'run' | 'load';
  /** YYYY-MM-DD (UTC), inclusive */
  from?: string;
  to?: string;
}

export const DISPLAY_STATES: DisplayState[] = ['Pending', 'Running', 'Passed', 'Partial', 'Failed', 'Error'];

interface CacheEntry {
  mtimeMs: number;
  size: number;
  row: RunRow | undefined;
}

/** The test a run is of: its targets, else the leading arguments a scheduled run was queued with, else its script. */
export function testName(record: RunRecord): string {
  if (record.kind === 'load' && typeof record.file === 'string') return record.file;
  if (Array.isArray(record.targets) && record.targets.length) return record.targets.map(String).join(' ');
  if (Array.isArray(record.argv)) {
    const lead: string[] = [];
    for (const a of record.argv) {
      if (typeof a !== 'string' || a.startsWith('-')) break;
      lead.push(a);
    }
    if (lead.length) return lead.join(' ');
  }
  if (typeof record.file === 'string') return record.file;
  return record.kind === 'load' ? '(load)' : '(tests/)';
}

export function rowOf(record: RunRecord): RunRow {
  const kind = record.kind === 'load' ? 'load' : 'run';
  const results = Array.isArray(record.results) ? record.results : [];
  const startedMs = typeof record.startedAt === 'string' ? Date.parse(record.startedAt) : NaN;
  let result = '';
  if (record.state !== 'pending' && record.state !== 'running') {
    if (kind === 'load') result = loadResultLine(record);
    else {
      const passed = results.filter((r) => r.state === 'passed').length;
      result = `${record.state}: ${passed}/${results.length} scenario(s) passed${record.error ? ` — ${record.error.message}` : ''}`;
    }
  }
  return {
    runId: record.runId,
    kind,
    rawState: String(recordState(record)),
    app: typeof record.app === 'string' ? record.app : undefined,
    name: testName(record),
    startedAt: typeof record.startedAt === 'string' ? record.startedAt : undefined,
    startedMs,
    durationMs: typeof record.durationMs === 'number' ? record.durationMs : undefined,
    exitCode: typeof record.exitCode === 'number' ? record.exitCode : undefined,
    result,
    pid: typeof record.pid === 'number' ? record.pid : undefined,
    runnerPid: typeof record.runnerPid === 'number' ? record.runnerPid : undefined,
  };
}

function stateOf(row: RunRow): DisplayState {
  return displayState({ runId: row.runId, state: row.rawState as RunRecord['state'], pid: row.pid, runnerPid: row.runnerPid });
}

const DAY_MS = 86_400_000;

function dayStartMs(day: string | undefined): number | undefined {
  if (!day || !/^\d{4}-\d{2}-\d{2}$/.test(day)) return undefined;
  const ms = Date.parse(`${day}T00:00:00.000Z`);
  return Number.isNaN(ms) ? undefined : ms;
}

/** Bumped when RunRow changes, so an older cache file is read as empty. */
const CACHE_VERSION = 2;
/** The cache file is rewritten at most this often while runs keep changing. */
const CACHE_WRITE_EVERY_MS = 2000;
/**
 * A finished run's record is not rewritten: between full checks only runs
 * still pending or running (and new ones) are looked at again. Every few
 * seconds all are, for a record replaced by hand.
 */
const FULL_CHECK_EVERY_MS = 5000;
const FINAL_RAW_STATES = new Set(['passed', 'partial', 'failed', 'error', 'timedOut', 'interrupted']);

/**
 * Keeps one row per stored run, refreshed from run.json only when that file
 * changed. The rows are also kept in `.topas/dashboard-index.json` (private,
 * written atomically), so a dashboard started again reads 1,000 small rows
 * instead of 1,000 records.
 */
export class RunIndex {
  readonly store: RunRecordStore;
  readonly cacheFile: string;
  private readonly cache = new Map<string, CacheEntry>();
  private dirty = false;
  private lastWriteMs = 0;
  private lastFullCheckMs = 0;

  constructor(dir: string, opts: { persist?: boolean } = {}) {
    this.store = new RunRecordStore(dir);
    this.cacheFile = path.join(dir, TOPAS_DIR, 'dashboard-index.json');
    if (opts.persist === false) this.cacheFile = '';
    else this.loadCache();
  }

  private loadCache(): void {
    try {
      const data = JSON.parse(fs.readFileSync(this.cacheFile, 'utf8')) as { version?: number; entries?: Record<string, CacheEntry> };
      if (data.version !== CACHE_VERSION || !data.entries) return;
      for (const [id, e] of Object.entries(data.entries)) {
        if (typeof e?.mtimeMs === 'number' && typeof e.size === 'number') this.cache.set(id, { mtimeMs: e.mtimeMs, size: e.size, row: e.row ? { ...e.row, startedMs: typeof e.row.startedAt === 'string' ? Date.parse(e.row.startedAt) : NaN } : undefined });
      }
    } catch {
      // no cache yet, or a damaged one: the records are the truth
    }
  }

  /** Writes the rows when they changed (at most every 2 s unless forced); a failure only costs the next start time. */
  saveCache(force = false): void {
    if (!this.cacheFile || !this.dirty) return;
    if (!force && Date.now() - this.lastWriteMs < CACHE_WRITE_EVERY_MS) return;
    try {
      fs.mkdirSync(path.dirname(this.cacheFile), { recursive: true, mode: 0o700 });
      writeFileAtomic(this.cacheFile, JSON.stringify({ version: CACHE_VERSION, entries: Object.fromEntries(this.cache) }));
      this.dirty = false;
      this.lastWriteMs = Date.now();
    } catch {
      // read-only folder: the index stays in memory
    }
  }

  /** Every run, newest first, each row current with its run.json. */
  rows(): RunRow[] {
    const ids = this.store.listRuns();
    const now = Date.now();
    const full = now - this.lastFullCheckMs >= FULL_CHECK_EVERY_MS;
    if (full) this.lastFullCheckMs = now;
    const seen = new Set<string>();
    const out: RunRow[] = [];
    for (const id of ids) {
      seen.add(id);
      const hit = full ? undefined : this.cache.get(id);
      const row = hit?.row && FINAL_RAW_STATES.has(hit.row.rawState) ? hit.row : this.row(id);
      if (row) out.push(row);
    }
    for (const id of this.cache.keys()) {
      if (!seen.has(id)) {
        this.cache.delete(id);
        this.dirty = true;
      }
    }
    this.saveCache();
    return out;
  }

  private row(id: string): RunRow | undefined {
    const file = path.join(this.store.runsDir, id, 'run.json');
    let st: fs.Stats;
    try {
      st = fs.statSync(file);
    } catch {
      if (this.cache.delete(id)) this.dirty = true;
      return undefined; // a folder whose record is not written yet
    }
    const hit = this.cache.get(id);
    if (hit && hit.mtimeMs === st.mtimeMs && hit.size === st.size) return hit.row;
    let row: RunRow | undefined;
    try {
      const record = JSON.parse(fs.readFileSync(file, 'utf8')) as RunRecord;
      row = rowOf({ ...record, runId: typeof record.runId === 'string' ? record.runId : id });
    } catch {
      row = undefined; // damaged record: left out of the list, like `test status` does
    }
    this.cache.set(id, { mtimeMs: st.mtimeMs, size: st.size, row });
    this.dirty = true;
    return row;
  }

  /** One run with its display state, or undefined when there is no such run (or its id is not one). */
  get(id: string): ListedRun | undefined {
    try {
      this.store.runDir(id); // validates the id
    } catch {
      return undefined;
    }
    const row = this.row(id);
    return row && { ...row, state: stateOf(row) };
  }

  /** The runs that pass the filter, newest first, with their display state. */
  list(filter: RunFilter = {}): ListedRun[] {
    const wantState = filter.state?.toLowerCase();
    const needle = filter.name?.trim().toLowerCase();
    const from = dayStartMs(filter.from);
    const toDay = dayStartMs(filter.to);
    const to = toDay === undefined ? undefined : toDay + DAY_MS;
    const out: ListedRun[] = [];
    for (const row of this.rows()) {
      if (filter.kind && row.kind !== filter.kind) continue;
      if (from !== undefined && !(row.startedMs >= from)) continue;
      if (to !== undefined && !(row.startedMs < to)) continue;
      if (needle && !`${row.name}\n${row.app ?? ''}\n${row.runId}`.toLowerCase().includes(needle)) continue;
      const state = stateOf(row);
      if (wantState && state.toLowerCase() !== wantState) continue;
      out.push({ ...row, state });
    }
    return out;
  }
}

export interface Page<T> {
  items: T[];
  page: number;
  pages: number;
  total: number;
  perPage: number;
}

export function paginate<T>(items: T[], page: number, perPage: number): Page<T> {
  const pages = Math.max(1, Math.ceil(items.length / perPage));
  const p = Math.min(Math.max(1, Math.floor(page) || 1), pages);
  return { items: items.slice((p - 1) * perPage, p * perPage), page: p, pages, total: items.length, perPage };
}

export interface TestTrend {
  name: string;
  kind: 'run' | 'load';
  runs: number;
  passed: number;
  failed: number;
  /** passed / finished, 0..1 (undefined before any run finished) */
  passRate?: number;
  /** durations of finished runs, oldest first (at most the last 30) */
  durationsMs: number[];
  /** passed (true) or not, oldest first, aligned with durationsMs */
  outcomes: boolean[];
  lastState: DisplayState;
}

const TREND_POINTS = 30;

/** Pass/fail rate and duration trend per test name, over the runs given (newest first). */
export function trends(runs: readonly ListedRun[]): TestTrend[] {
  const by = new Map<string, TestTrend>();
  for (const r of runs) {
    const key = `${r.kind}\n${r.name}`;
    let t = by.get(key);
    if (!t) {
      t = { name: r.name, kind: r.kind, runs: 0, passed: 0, failed: 0, durationsMs: [], outcomes: [], lastState: r.state };
      by.set(key, t);
    }
    t.runs++;
    // a partial load run passed its gate on what arrived (exit 0): it counts as passed, and lists as Partial
    const passed = r.state === 'Passed' || r.state === 'Partial';
    if (passed) t.passed++;
    else if (r.state === 'Failed' || r.state === 'Error') t.failed++;
    if ((passed || r.state === 'Failed' || r.state === 'Error') && t.durationsMs.length < TREND_POINTS && typeof r.durationMs === 'number') {
      t.durationsMs.unshift(r.durationMs);
      t.outcomes.unshift(passed);
    }
  }
  for (const t of by.values()) t.passRate = t.passed + t.failed ? t.passed / (t.passed + t.failed) : undefined;
  return [...by.values()].sort((a, b) => a.name.localeCompare(b.name) || a.kind.localeCompare(b.kind));
}

export interface QueueView {
  /** scheduled runs of one app run one at a time (they queue on the app's lock) */
  limitPerApp: number;
  pending: ListedRun[];
  running: ListedRun[];
}

/** Pending runs oldest first (the order they were queued in), then the running ones. */
export function queueOf(runs: readonly ListedRun[]): QueueView {
  const pending = runs.filter((r) => r.state === 'Pending').reverse();
  const running = runs.filter((r) => r.state === 'Running').reverse();
  return { limitPerApp: 1, pending, running };
}
