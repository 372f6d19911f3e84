import * as fs from 'node:fs';
import * as path from 'node:path';
import { TopasError } from '../errors';
import type { AppSpec } from '../spec/app-spec';
import { RunRecordStore } from '../run/run-record';
import { formatDurationMs } from '../util/duration';
import { figuresFromBaselineJson, type Figures } from './baseline';
import type { LoadPlan } from './load-plan';

// What `topas load` reads and checks before it starts (baseline, script file), and how it words its plan.

/** The plan in words: `constant arrival rate 20/s for 3.00s, up to 20 VUs`. */
export function describePlan(p: LoadPlan): string {
  const e = p.executor;
  const per = (rate: number, unitMs: number) => `${rate}/${unitMs === 1000 ? 's' : formatDurationMs(unitMs)}`;
  switch (e.executor) {
    case 'constant-arrival-rate':
      return `constant arrival rate ${per(e.rate, e.timeUnitMs)} for ${formatDurationMs(e.durationMs)}, up to ${e.maxVus} VUs`;
    case 'ramping-arrival-rate':
      return `ramping arrival rate (${e.stages.map((s) => `${per(s.target, e.timeUnitMs)} in ${formatDurationMs(s.durationMs)}`).join(', ')}), up to ${e.maxVus} VUs`;
    case 'constant-vus':
      return `${e.vus} constant VUs for ${formatDurationMs(e.durationMs)}`;
  }
}


/** --baseline: an existing file, else a run id of this app's records. */
export function readBaseline(value: string, recordDir: string, cwd: string): Figures {
  const asFile = path.resolve(cwd, value);
  if (fs.existsSync(asFile) && fs.statSync(asFile).isFile()) {
    let json: unknown;
    try {
      json = JSON.parse(fs.readFileSync(asFile, 'utf8'));
    } catch (err) {
      throw new TopasError('INVALID_FLAGS', `--baseline ${value}: not JSON (${(err as Error).message})`);
    }
    return figuresFromBaselineJson(json, `--baseline ${value}`);
  }
  const store = new RunRecordStore(recordDir);
  let record;
  try {
    record = store.readRun(value);
  } catch {
    throw new TopasError('INVALID_FLAGS', `--baseline ${value}: no such file, and no run "${value}" in ${store.runsDir}`, { hint: 'pass a run id from `topas test status` or a JSON file' });
  }
  return figuresFromBaselineJson(record, `--baseline ${value}`);
}

export function stringEnv(env: NodeJS.ProcessEnv): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined) out[k] = v;
  return out;
}

/** Why a .json file is not a Postman collection, for the message. */
export function describeJsonProblem(file: string): string {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    return `cannot read: ${(err as Error).message}`;
  }
  try {
    JSON.parse(text);
  } catch (err) {
    // the parser quotes the input: binary bytes must not reach the terminal
    return `not valid JSON: ${(err as Error).message.replace(/[\x00-\x08\x0b-\x1f\x7f]/g, '?')}`;
  }
  return 'valid JSON, but no Postman collection schema in info.schema';
}

/** The spec as the record keeps it: plain data (the record writer masks its secrets). */
export function recordedSpec(spec: AppSpec): unknown {
  try {
    return JSON.parse(JSON.stringify(spec));
  } catch {
    return undefined;
  }
}
