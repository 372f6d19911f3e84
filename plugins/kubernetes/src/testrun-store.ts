import * as k8s from '@kubernetes/client-node';
import { TopasError, type LogLine, type RemoteRunInfo, type RemoteRunStore } from 'topas';
import { apiMessage, statusOf, type Cluster } from './cluster';
import { LABELS, MANAGED_BY, labelValue } from './manifests';
import { TESTRUN, TestRuns, newestFirst, unseen, type TestRunObject } from './testrun';

const FINAL = new Set(['Passed', 'Failed', 'Error']);
/** a watch the API server closes (its timeout) is opened again; a poll covers what a reconnect may miss */
const RESYNC_MS = 5000;

/**
 * `topas test status|logs --backend kubernetes`: the TestRuns of the namespace
 * as runs (those `topas run` and `topas test schedule` made, kept as history
 * once they ended, and those a CronJob made, which no host has a record of),
 * read through the API server only; `logs --follow` watches the TestRun.
 */
export class TestRunStore implements RemoteRunStore {
  private readonly testRuns: TestRuns;

  constructor(private readonly cluster: Cluster) {
    this.testRuns = new TestRuns(cluster);
  }

  async list(opts: { limit: number; app?: string }): Promise<RemoteRunInfo[]> {
    const selector = `${LABELS.managedBy}=${MANAGED_BY}${opts.app ? `,${LABELS.app}=${labelValue(opts.app)}` : ''}`;
    let items: TestRunObject[];
    try {
      items = await this.testRuns.list(selector);
    } catch (err) {
      // no CRD yet: no runs
      if (statusOf(err) === 404) return [];
      throw readError(err, this.cluster);
    }
    return items.sort(newestFirst).slice(0, opts.limit).map(runInfo);
  }

  async get(id: string): Promise<RemoteRunInfo> {
    return runInfo(await this.find(id));
  }

  async logs(id: string, opts: { follow: boolean; signal?: AbortSignal; onLog: (line: LogLine) => void }): Promise<RemoteRunInfo> {
    let tr = await this.find(id);
    const name = tr.metadata!.name!;
    let seen = 0;
    const emit = (o: TestRunObject) => {
      const st = o.status ?? {};
      const next = unseen(st.log, st.logTotal, seen);
      if (next.missed) opts.onLog({ ts: Date.now(), runId: o.spec.runId, source: 'topas', level: 'warn', message: `${next.missed} earlier line(s) are no longer kept in TestRun ${name}` });
      for (const l of next.entries) opts.onLog({ ...l, level: l.level as LogLine['level'] });
      seen = next.total;
    };
    emit(tr);
    if (!opts.follow || FINAL.has(tr.status?.phase ?? '')) return runInfo(tr);
    const path = `/apis/${TESTRUN.group}/${TESTRUN.version}/namespaces/${this.cluster.namespace}/${TESTRUN.plural}`;
    const watch = new k8s.Watch(this.cluster.kc);
    return new Promise<RemoteRunInfo>((resolve, reject) => {
      let ended = false;
      let controller: AbortController | undefined;
      let resync: NodeJS.Timeout | undefined;
      const finish = (err?: unknown) => {
        if (ended) return;
        ended = true;
        if (resync) clearInterval(resync);
        opts.signal?.removeEventListener('abort', onAbort);
        controller?.abort();
        if (err) reject(err);
        else resolve(runInfo(tr));
      };
      const seeObject = (o: TestRunObject) => {
        tr = o;
        emit(o);
        if (FINAL.has(o.status?.phase ?? '')) finish();
      };
      const onAbort = () => finish();
      opts.signal?.addEventListener('abort', onAbort);
      const open = () => {
        if (ended) return;
        watch
          .watch(
            path,
            { fieldSelector: `metadata.name=${name}`, allowWatchBookmarks: false },
            (type, obj: TestRunObject) => {
              if (type === 'DELETED') finish();
              else if (type === 'ADDED' || type === 'MODIFIED') seeObject(obj);
            },
            // the server ends watches after a while: open a new one (the resync poll covers the gap)
            () => setTimeout(open, 200).unref(),
          )
          .then((c) => {
            controller = c;
            if (ended) c.abort();
          })
          .catch(() => setTimeout(open, 1000).unref());
      };
      open();
      resync = setInterval(() => {
        this.testRuns.get(name).then(seeObject, (err: unknown) => {
          if (statusOf(err) === 404) finish();
        });
      }, RESYNC_MS);
      if (opts.signal?.aborted) finish();
    });
  }

  private async find(id: string): Promise<TestRunObject> {
    let tr: TestRunObject | undefined;
    try {
      tr = await this.testRuns.find(id);
    } catch (err) {
      throw readError(err, this.cluster);
    }
    if (!tr) throw new TopasError('FILE_NOT_FOUND', `kubernetes: no TestRun of run "${id}" in namespace ${this.cluster.namespace}`, { hint: 'list them with `topas test status --backend kubernetes`' });
    return tr;
  }
}

/** A TestRun as `topas test status` shows a run. */
export function runInfo(tr: TestRunObject): RemoteRunInfo {
  const st = tr.status ?? {};
  const result = st.result;
  const error = result?.error as { message?: string } | undefined;
  const waiting = st.phase === 'Pending' && st.waitingFor ? `waiting for TestRun ${st.waitingFor} (one run of an app at a time)` : undefined;
  return {
    runId: tr.spec?.runId ?? tr.metadata!.name!,
    name: tr.metadata!.name!,
    app: tr.spec?.app,
    phase: st.phase ?? 'Pending',
    createdAt: tr.metadata?.creationTimestamp ? String(tr.metadata.creationTimestamp) : undefined,
    startedAt: st.startedAt,
    finishedAt: st.finishedAt,
    targets: tr.spec?.targets,
    outcome: result ? { state: result.state, scenarioStates: (result.results as Array<{ state?: string }>).map((r) => String(r.state)), ...(error?.message ? { error: error.message } : {}) } : undefined,
    message: waiting ?? st.message,
    ...(st.git ? { git: { url: st.git.url, ...(st.git.ref ? { ref: st.git.ref } : {}), commit: st.git.commit } } : {}),
  };
}

function readError(err: unknown, cluster: Cluster): TopasError {
  return new TopasError('BACKEND_UNAVAILABLE', `kubernetes: could not read the TestRuns of namespace ${cluster.namespace}: ${apiMessage(err)}`, { cause: err });
}
