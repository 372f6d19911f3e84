import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ScenarioTask } from '../run/scenario-types';

/** A relative path in a scenario: next to the scenario file first, then the run's base directory. */
export function resolveScenarioFile(task: Pick<ScenarioTask, 'file' | 'baseDir'>, p: string, what: string): string {
  if (path.isAbsolute(p)) {
    if (!fs.existsSync(p)) throw new Error(`${what}: file not found: ${p}`);
    return p;
  }
  const tried = [...new Set([path.resolve(path.dirname(task.file), p), path.resolve(task.baseDir, p)])];
  const hit = tried.find((f) => fs.existsSync(f));
  if (!hit) throw new Error(`${what}: file not found: ${p} (looked in ${tried.map((f) => path.dirname(f)).join(', ')})`);
  return hit;
}

// a run of many instances names the same file thousands of times
const chunkNames = new Map<string, string>();
export function cachedChunkName(task: { file: string; baseDir: string }): string {
  const key = `${task.baseDir}\0${task.file}`;
  let name = chunkNames.get(key);
  if (name === undefined) {
    name = chunkName(task);
    if (chunkNames.size >= 1000) chunkNames.clear();
    chunkNames.set(key, name);
  }
  return name;
}

/** Chunk name: the file relative to baseDir, with forward slashes. */
export function chunkName(task: { file: string; baseDir: string }): string {
  const rel = path.relative(task.baseDir, task.file);
  return (rel && !rel.startsWith('..') ? rel : task.file).split(path.sep).join('/');
}

// scenario files are read once per worker: load tests start thousands of runs of one file
const sourceCache = new Map<string, { mtimeMs: number; source: string }>();
export async function readScenario(file: string): Promise<string> {
  // statSync: a few µs, where an async stat's thread-pool round trip costs a run's whole budget
  const st = fs.statSync(file);
  const hit = sourceCache.get(file);
  if (hit && hit.mtimeMs === st.mtimeMs) return hit.source;
  const source = await fs.promises.readFile(file, 'utf8');
  sourceCache.set(file, { mtimeMs: st.mtimeMs, source });
  return source;
}
