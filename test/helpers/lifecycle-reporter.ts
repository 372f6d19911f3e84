import * as fs from 'node:fs';
import * as path from 'node:path';

/** One call of a reporter hook, as the lifecycle reporter wrote it. */
export type HookEvent = { hook: string; v: Record<string, unknown> };

const EVENTS_FILE = 'events.ndjson';

/**
 * Writes `<dir>/lifecycle.js`, a custom reporter (`--reporter ./lifecycle.js`)
 * whose every hook appends a JSON line to `<dir>/events.ndjson`: run start
 * (as given), step end (name, state, Lua location of its error), scenario end,
 * each second of a load run (t, requests, target rate) and run end (state, kind).
 */
export function writeLifecycleReporter(dir: string): void {
  fs.writeFileSync(
    path.join(dir, 'lifecycle.js'),
    [
      "const fs = require('node:fs');",
      `const out = (hook, v) => fs.appendFileSync(__dirname + '/${EVENTS_FILE}', JSON.stringify({ hook, v }) + '\\n');`,
      'module.exports = {',
      "  onRunStart: (info) => out('runStart', info),",
      "  onStepEnd: (s) => out('stepEnd', { name: s.name, state: s.state, location: s.error && s.error.location }),",
      "  onScenarioEnd: (r) => out('scenarioEnd', { name: r.name, state: r.state }),",
      "  onLoadSecond: (p) => out('loadSecond', { t: p.t, requests: p.requests, targetRate: p.targetRate }),",
      "  onRunEnd: (r) => out('runEnd', { state: r.state, kind: r.kind }),",
      '};',
      '',
    ].join('\n'),
  );
}

/** The hook calls written so far, in order; the file is removed, so the next run starts a new list. */
export function readHookEvents(dir: string): HookEvent[] {
  const file = path.join(dir, EVENTS_FILE);
  const events = fs.readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as HookEvent);
  fs.rmSync(file);
  return events;
}
