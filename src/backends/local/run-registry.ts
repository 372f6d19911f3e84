import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { canonicalSpecPath, isKeptApp, type SweepOptions } from '../ownership';
import { isAlive, processStartTicks, stopGroup, type ProcessRef } from './processes';

/**
 * Every local run records what it started in `${os.tmpdir()}/topas-local/<runId>.json`,
 * so a later `topas down --all` (or the crash-time sweep) can find processes and
 * PostgreSQL clusters that a crashed run left behind.
 */
export interface RunRecord {
  runId: string;
  app: string;
  /** absolute path of the app's spec: with `app`, what tells two folders' apps apart */
  specFile?: string;
  /** the process that holds the run; when it is gone (and the run is not kept) the run is a leftover */
  owner: ProcessRef;
  /**
   * true after `detach()` (topas up, --keep): the run lives on purpose and
   * stays so (a later run that attaches does not undo it); only a sweep for
   * the same app and spec file (`topas down` there) removes it.
   */
  detached: boolean;
  workDir: string;
  /** extra folders of the run outside workDir (a PostgreSQL data dir in tmp) */
  extraDirs: string[];
  processes: ProcessRef[];
  postgres?: { dataDir: string; pid: number; startTicks?: number };
  /** the detached host of the dependents' shaping proxies, when the run has one */
  proxyHost?: ProcessRef;
}

function registryDir(): string {
  return path.join(os.tmpdir(), 'topas-local');
}

export function registryFile(runId: string): string {
  return path.join(registryDir(), `${runId.replace(/[^A-Za-z0-9._-]/g, '_')}.json`);
}

/** Atomic write (tmp + rename): a reader never sees half a file. */
export function writeRunRecord(rec: RunRecord): void {
  const file = registryFile(rec.runId);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  // kept stays kept: a process that attached to a kept SUT rewrites the record as its owner
  const before = readRunRecord(file);
  const out: RunRecord = {
    ...rec,
    detached: rec.detached || before?.detached === true,
    specFile: rec.specFile !== undefined ? canonicalSpecPath(rec.specFile) : before?.specFile,
  };
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(out, null, 2), { mode: 0o600 });
  fs.renameSync(tmp, file);
}

export function removeRunRecord(runId: string): void {
  fs.rmSync(registryFile(runId), { force: true });
}

function readRunRecord(file: string): RunRecord | undefined {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as RunRecord;
  } catch {
    return undefined;
  }
}

export function readRunRecords(): RunRecord[] {
  let names: string[];
  try {
    names = fs.readdirSync(registryDir());
  } catch {
    return [];
  }
  const out: RunRecord[] = [];
  for (const n of names) {
    if (!n.endsWith('.json')) continue;
    try {
      out.push(JSON.parse(fs.readFileSync(path.join(registryDir(), n), 'utf8')) as RunRecord);
    } catch {
      /* half-removed or foreign file: skip */
    }
  }
  return out;
}

export function currentOwner(): ProcessRef {
  return { pid: process.pid, startTicks: processStartTicks(process.pid) };
}

/**
 * Why a sweep may remove this run, or undefined when it must not: a run whose
 * owner process is gone (pid and start time) and that was not kept on purpose;
 * or a SUT kept for `opts.kept` (same app name and spec file).
 */
function sweepReason(rec: RunRecord, opts: SweepOptions): string | undefined {
  if (rec.detached) return isKeptApp(opts.kept, rec.app, rec.specFile) ? 'kept SUT of this app' : undefined;
  if (!opts.all && opts.app !== undefined && rec.app !== opts.app) return undefined;
  if (isAlive(rec.owner)) return undefined;
  return `owner pid ${rec.owner.pid} gone`;
}

/** Kill what the runs a sweep may remove (see sweepReason) left behind: processes, PostgreSQL, proxy host, files. */
export async function sweepRuns(opts: SweepOptions): Promise<{ removed: string[] }> {
  const removed: string[] = [];
  for (const rec of readRunRecords()) {
    const reason = sweepReason(rec, opts);
    if (reason === undefined) continue;
    const live = rec.processes.filter((p) => isAlive(p));
    await Promise.all(live.map((p) => stopGroup(p, 2000)));
    let pg = false;
    if (rec.postgres && isAlive(rec.postgres)) {
      pg = true;
      await stopGroup(rec.postgres, 5000, 'SIGINT');
    }
    // the host would leave by itself once the work dir is gone (within a second); do not leave it to that
    const host = rec.proxyHost !== undefined && isAlive(rec.proxyHost);
    if (host) await stopGroup(rec.proxyHost!, 2000);
    for (const d of [rec.workDir, ...rec.extraDirs]) fs.rmSync(d, { recursive: true, force: true });
    removeRunRecord(rec.runId);
    const what = `local run ${rec.runId} (app ${rec.app}, ${reason}): ${live.length} process group(s)${pg ? ', postgres' : ''}${host ? ', proxy host' : ''}`;
    opts.log?.(`swept ${what}`);
    removed.push(what);
  }
  return { removed };
}
