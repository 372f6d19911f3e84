import type { RemoteLostShare } from '../backends/backend';
import { summarizePlaybook, type PlaybookUnit } from '../playbook/run-playbook';
import type { PlaybookSummary } from '../reporters/run-report';
import type { ScenarioResult, ScenarioTask } from './scenario-types';

type Unit = { kind: 'scenario'; task: ScenarioTask } | PlaybookUnit;

/**
 * A remote runner that was lost (a runner pod deleted or killed before it
 * reported) ran its share of the scenarios and playbook instances: they are
 * over and did not pass. As a worker process that dies under `--spread
 * processes` (scenario-pool.ts), each gets an `error` result naming the runner
 * and the others it ran, so the run fails (exit 1) and says where, instead of
 * failing to stand up (exit 3). `shareUnits` is the lost share (shardUnits);
 * what did arrive from that runner (`have`, by name) is kept.
 */
export function lostShareResults(shareUnits: Unit[], lost: RemoteLostShare, have: ScenarioResult[], startedAtMs: number): ScenarioResult[] {
  const arrived = new Set(have.map((r) => r.name));
  const tasks = shareUnits.flatMap((u) => (u.kind === 'scenario' ? [u.task] : u.tasks)).filter((t) => !arrived.has(t.name));
  const names = tasks.map((t) => t.name);
  const shown = names.length > 10 ? `${names.slice(0, 10).join(', ')} and ${names.length - 10} more` : names.join(', ');
  const message = `${lost.runner} was lost (${lost.reason}); the ${tasks.length} instance(s) it ran were stopped with it: ${shown}`;
  return tasks.map((task) => ({
    runId: task.runId,
    name: task.name,
    file: task.file,
    instance: task.instance,
    state: 'error',
    startedAt: new Date(startedAtMs).toISOString(),
    // they ended when the runner was lost: before the barriers of the others failed for want of them
    durationMs: Math.max(0, lost.lostAtMs - startedAtMs),
    steps: [],
    checks: [],
    error: { name: 'RunnerLost', message },
  }));
}

/** The playbooks' summaries again from every result, the lost instances' included (a lost runner's roles reported nothing). */
export function resummarize(summaries: PlaybookSummary[], units: Unit[], results: ScenarioResult[], namesDir: string): PlaybookSummary[] {
  return units.flatMap((u) => {
    if (u.kind !== 'playbook') return [];
    const names = new Set(u.tasks.map((t) => t.name));
    const mine = results.filter((r) => names.has(r.name));
    const fresh = summarizePlaybook(u.playbook, mine, namesDir);
    // a playbook no runner reported on and none of whose instances was lost stays as it was
    return mine.length || !summaries.some((s) => s.name === fresh.name) ? [fresh] : summaries.filter((s) => s.name === fresh.name);
  });
}
