import * as path from 'node:path';
import type { ScenarioPool } from '../run/scenario-pool';
import type { ScenarioResult, ScenarioTask } from '../run/scenario-types';
import { messageWithLocation, type PlaybookSummary } from '../reporters/run-report';
import { SyncBroker } from '../sync/sync-broker';
import { RemoteSyncGroup } from '../sync/sync-client';
import type { SyncGroup } from '../sync/sync-group';
import { startPlaybookShaping } from '../shape/playbook-shaping';
import type { ShapeController } from '../shape/shape-controller';
import type { Playbook } from './playbook';

export const DEFAULT_BARRIER_TIMEOUT_MS = 60_000;

/** A playbook as a unit of a run: the instances this process runs (`tasks`), out of all of them (`instances`). */
export interface PlaybookUnit {
  kind: 'playbook';
  playbook: Playbook;
  /** names the playbook's sync group among the run's ("p2") */
  key: string;
  tasks: ScenarioTask[];
  /** every instance id of the playbook, also those other runners run (a `--shard` of a spread run) */
  instances: string[];
}

/** Where the playbook's sync group lives: this process (rpc from its workers), or a sync server shared by several runners. */
export interface SyncPlacement {
  /** the sync server shared by the run's runners; `run` names the run there (the same in every runner), its groups are `<run>/<playbook key>` */
  server?: { url: string; token?: string; run: string };
}

export interface PlaybookDeps {
  runTask: (t: ScenarioTask) => Promise<ScenarioResult>;
  pool: ScenarioPool;
  /** the in-process groups by scenario run id, for the coordinator's rpc router */
  brokers: Map<string, { broker: SyncGroup; instance: string }>;
  sync: SyncPlacement;
  /** declarative `shaping:` runs in one runner only (the first shard) */
  shapes?: ShapeController;
  log?: (line: string) => void;
}

/**
 * All instances of a playbook start together (barriers need them all). The
 * first instance that fails stops the others: waits on it fail at once, naming
 * it, and the rest are cancelled. With a sync server, other runners' instances
 * are in the same group: a failure there stops this runner's instances too.
 */
export async function runPlaybook(unit: PlaybookUnit, deps: PlaybookDeps): Promise<ScenarioResult[]> {
  const { pool } = deps;
  const barrierTimeoutMs = unit.playbook.barrierTimeoutMs ?? DEFAULT_BARRIER_TIMEOUT_MS;
  let firstFailure: string | undefined;
  const stopOthers = (except: string | undefined, why: string) => {
    if (firstFailure) return;
    firstFailure = why;
    pool.cancel(
      unit.tasks.filter((t) => t.runId !== except).map((t) => t.runId),
      why,
    );
  };
  let group: SyncGroup;
  let tasks = unit.tasks;
  const server = deps.sync.server;
  if (server) {
    const name = `${server.run}/${unit.key}`;
    group = await RemoteSyncGroup.join({
      url: server.url,
      token: server.token,
      group: name,
      instances: unit.instances,
      owns: unit.tasks.map((t) => t.instance.id),
      defaultTimeoutMs: barrierTimeoutMs,
      onFailure: (instance, reason) => stopOthers(undefined, `instance ${instance} failed (${reason})`),
    });
    // the instances call the server themselves, from their workers
    tasks = unit.tasks.map((t) => ({ ...t, sync: { url: server.url, token: server.token, group: name } }));
  } else {
    group = new SyncBroker(unit.instances, barrierTimeoutMs);
  }
  for (const t of tasks) deps.brokers.set(t.runId, { broker: group, instance: t.instance.id });
  // declarative `shaping:` steps (at: / on:), stopped when the playbook ends
  const playbookTimeoutMs = unit.playbook.timeoutMs ?? unit.tasks[0]?.timeoutMs ?? DEFAULT_BARRIER_TIMEOUT_MS;
  const shaping =
    unit.playbook.shaping.length > 0 && deps.shapes
      ? startPlaybookShaping(unit.playbook.shaping, { controller: deps.shapes, waitSignal: (name) => group.waitSignal('playbook-shaping', name, 1, playbookTimeoutMs), log: deps.log ?? (() => undefined) })
      : undefined;
  const results = await Promise.all(
    tasks.map(async (task) => {
      const r = await deps.runTask(task);
      if (r.state === 'passed') group.instanceEnded(task.instance.id, 'it finished');
      else {
        const why = r.error ? `${r.state}: ${messageWithLocation(r.error)}` : r.state;
        group.instanceEnded(task.instance.id, why);
        if (r.state !== 'interrupted') stopOthers(task.runId, `instance ${task.instance.id} failed (${why})`);
      }
      return r;
    }),
  );
  shaping?.stop();
  group.close('the playbook ended');
  for (const t of tasks) deps.brokers.delete(t.runId);
  return results;
}

export function summarizePlaybook(pb: Playbook, results: ScenarioResult[], cwd: string): PlaybookSummary {
  const roles = pb.roles.map((role) => {
    const mine = results.filter((r) => r.instance.role === role.name);
    return { name: role.name, ok: mine.filter((r) => r.state === 'passed').length, total: mine.length };
  });
  // the cause ended first: instances whose barriers failed because of it (or that were stopped) end after it
  const endMs = (r: ScenarioResult) => Date.parse(r.startedAt) + r.durationMs;
  const earliest = (rs: ScenarioResult[]) => rs.reduce<ScenarioResult | undefined>((a, r) => (!a || endMs(r) < endMs(a) ? r : a), undefined);
  const failed = earliest(results.filter((r) => r.state !== 'passed' && r.state !== 'interrupted')) ?? results.find((r) => r.state !== 'passed');
  return {
    name: pb.name,
    file: path.relative(cwd, pb.file),
    state: failed ? failed.state : 'passed',
    roles,
    firstFailure: failed ? { instance: failed.instance.id, error: failed.error } : undefined,
  };
}
