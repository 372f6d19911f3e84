import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { isAlive, processStartTicks, stopGroup, type ProcessRef } from './processes';

/**
 * Every local run records what it started in `${os.tmpdir()}/topas-local/<runId>.json`,
 * so a later `topas down --all` (or the crash-time sweep) can find processes and
 * PostgreSQL clusters that a crashed run left behind.
 */
export interface RunRecord {
  runId: string;
  app: string;
  owner: ProcessRef;
  /** true after `detach()` (topas up): the run lives on purpose, only `all` sweeps it */
  detached: boolean;
  workDir: string;
  /** extra folders of the run outside workDir (a PostgreSQL data dir in tmp) */
  extraDirs: string[];
  processes: ProcessRef[];
  postgres?: { dataDir: string; pid: number; startTicks?: number };
}

export function registryDir(): string {
  return path.join(os.tmpdir(), 'topas-local');
}

export function registryFile(runId: string): string {
  return path.join(registryDir(), `${runId.replace(/[^A-Za-z0-9._-]/g, '_')}.json`);
}

/** Atomic write (tmp + rename): a reader never sees half a file. */
export function writeRunRecord(rec: RunRecord): void {
  const file = registryFile(rec.runId);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(rec, null, 2), { mode: 0o600 });
  fs.renameSync(tmp, file);
}

export function removeRunRecord(runId: string): void {
  fs.rmSync(registryFile(runId), { force: true });
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
 * Kill what runs left behind and remove their files. Without `all`, only runs
 * whose owner died and that were not detached on purpose.
 */
export async function sweepRuns(opts: { app?: string; all?: boolean; log?: (line: string) => void }): Promise<{ removed: string[] }> {
  const removed: string[] = [];
  for (const rec of readRunRecords()) {
    if (opts.app !== undefined && rec.app !== opts.app) continue;
    if (!opts.all && (rec.detached || isAlive(rec.owner))) continue;
    const live = rec.processes.filter((p) => isAlive(p));
    await Promise.all(live.map((p) => stopGroup(p, 2000)));
    let pg = false;
    if (rec.postgres && isAlive(rec.postgres)) {
      pg = true;
      await stopGroup(rec.postgres, 5000, 'SIGINT');
    }
    for (const d of [rec.workDir, ...rec.extraDirs]) fs.rmSync(d, { recursive: true, force: true });
    removeRunRecord(rec.runId);
    const what = `local run ${rec.runId} (app ${rec.app}): ${live.length} process group(s)${pg ? ', postgres' : ''}`;
    opts.log?.(`swept ${what}`);
    removed.push(what);
  }
  return { removed };
}
