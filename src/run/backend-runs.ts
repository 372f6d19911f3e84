import { TopasError } from '../errors';
import { loadAppSpec } from '../spec/load-app-spec';
import type { Io } from '../io';
import type { RemoteRunInfo, RemoteRunStore } from '../backends/backend';
import type { LogLine } from './scenario-types';
import type { RunRecord } from './run-record';
import { runStatus, streamLogs, type RunSummary } from './schedule-service';

/**
 * `topas test status|logs`: this folder's run records, or with `--backend NAME`
 * the runs that backend keeps by itself (Backend.remoteRuns: a cluster's
 * TestRuns, those of CronJobs included), shown the same way.
 */

export interface RunSummaryWithName extends RunSummary {
  /** the backend's own name for the run (a TestRun's name) */
  name?: string;
  message?: string;
  /** the Git source's commit that ran */
  git?: { url: string; ref?: string; commit: string };
}

export async function listRunStatus(opts: { io: Io; backend?: string; id?: string; app?: string; limit?: number }): Promise<RunSummaryWithName[]> {
  if (!opts.backend) return runStatus(opts);
  const store = await remoteRunStore(opts.io, opts.backend);
  if (opts.id) return [remoteSummary(await store.get(opts.id), opts.io.now())];
  // --app names a spec file; the backend keeps runs by the app's name (one namespace may hold many apps' runs)
  const app = opts.app === undefined ? undefined : (await loadAppSpec(opts.app, { cwd: opts.io.cwd, env: opts.io.env })).name;
  return (await store.list({ limit: opts.limit ?? 20, ...(app !== undefined ? { app } : {}) })).map((r) => remoteSummary(r, opts.io.now()));
}

/** Prints the run's lines (and with follow, new ones until it ends); resolves to its final state. */
export async function followRunLogs(opts: { io: Io; backend?: string; id: string; app?: string; follow: boolean; signal?: AbortSignal; write: (line: LogLine) => void }): Promise<{ state: string }> {
  if (!opts.backend) {
    const record: RunRecord = await streamLogs(opts);
    return { state: String(record.state) };
  }
  const store = await remoteRunStore(opts.io, opts.backend);
  const info = await store.logs(opts.id, { follow: opts.follow, signal: opts.signal, onLog: opts.write });
  return { state: info.phase };
}

async function remoteRunStore(io: Io, backend: string): Promise<RemoteRunStore> {
  const { checkBackendName, getBackend } = await import('../backends/registry');
  checkBackendName(backend);
  const b = backend === 'auto' ? undefined : getBackend(backend);
  if (!b?.remoteRuns) {
    throw new TopasError('INVALID_FLAGS', `--backend ${backend} keeps no runs of its own: test status and test logs read the run records of this folder`, {
      hint: 'leave --backend out, or use a backend that keeps runs (kubernetes: the TestRuns of a namespace)',
    });
  }
  return b.remoteRuns({ env: io.env });
}

/** A backend's run as `topas test status` shows a local record: state, result line, duration of the run itself. */
export function remoteSummary(r: RemoteRunInfo, nowMs: number): RunSummaryWithName {
  const o = r.outcome;
  const passed = o ? o.scenarioStates.filter((s) => s === 'passed').length : 0;
  const commit = r.git ? ` (git ${r.git.commit.slice(0, 12)})` : '';
  const result = o ? `${o.state}: ${passed}/${o.scenarioStates.length} scenario(s) passed${commit}${o.error ? ` — ${o.error}` : ''}` : r.phase === 'Pending' ? (r.message ?? '') : '';
  const start = r.startedAt ? Date.parse(r.startedAt) : NaN;
  const end = r.finishedAt ? Date.parse(r.finishedAt) : r.phase === 'Running' ? nowMs : NaN;
  const durationMs = Number.isFinite(start) && Number.isFinite(end) ? Math.max(0, end - start) : undefined;
  return { runId: r.runId, name: r.name, state: r.phase, result, app: r.app, startedAt: r.startedAt ?? r.createdAt, durationMs, targets: r.targets, ...(r.message ? { message: r.message } : {}), ...(r.git ? { git: r.git } : {}) };
}
