import * as fs from 'node:fs';
import * as path from 'node:path';
import type { EndpointMap } from '../../src/backends/backend';
import type { LuaRuntime } from '../../src/lua/engine';
import type { ScenarioResult, ScenarioTask } from '../../src/run/scenario-types';

let seq = 0;

/** Writes `source` as `dir/name` and runs it on `rt` as one scenario. */
export async function runLuaSource(rt: LuaRuntime, dir: string, name: string, source: string, endpoints: EndpointMap = {}): Promise<ScenarioResult> {
  const file = path.join(dir, name);
  fs.writeFileSync(file, source);
  const task: ScenarioTask = {
    runId: `lua-${++seq}`,
    file,
    baseDir: dir,
    name,
    timeoutMs: 30_000,
    env: {},
    instance: { id: 'i', role: 'default', index: 1, count: 1, params: {} },
    endpoints,
    memoryLimitBytes: 32 << 20,
    continueOnFailure: false,
  };
  return rt.run(task);
}
