import fs from 'node:fs';
import path from 'node:path';
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
