import * as k8s from '@kubernetes/client-node';
import { TopasError, type RemoteGitSource } from 'topas';
import { apiMessage, statusOf, type Cluster } from './cluster';
import { MANAGED_BY, LABELS, labelValue } from './manifests';

/**
 * The TestRun custom resource: one per `topas run --backend kubernetes`. Its
 * spec says what the runner Job runs (files in a ConfigMap, env in a Secret,
 * the SUT to attach to); the runner writes step events, log lines and the
 * results to its status subresource, which is all the CLI reads back (no
 * port-forward, no pod IPs). `topas kube install` (and the first run, when
 * allowed) installs the CRD and, per namespace, the runner's ServiceAccount,
 * Role and RoleBinding.
 */
export const TESTRUN = { group: 'topas.dev', version: 'v1alpha1', plural: 'testruns', kind: 'TestRun' } as const;
export const TESTRUN_API_VERSION = `${TESTRUN.group}/${TESTRUN.version}`;
export const RUNNER_ACCOUNT = 'topas-runner';
const FIELD_MANAGER = 'topas';

/** the topas run id of a TestRun, as a label */
export const TEST_RUN_LABEL = 'topas.dev/test-run';
/** finished TestRuns kept per app (the newest), as a CronJob keeps its last Jobs */
export const HISTORY_PER_APP = 20;

export type TestRunPhase = 'Pending' | 'Running' | 'Passed' | 'Failed' | 'Error';

/** The TestRun's spec: what the runner needs besides the ConfigMap's files and the Secret's env. */
export interface TestRunSpec {
  app: string;
  runId: string;
  configMap: string;
  secret: string;
  /** paths inside the files' root */
  specFile: string;
  cwd: string;
  targets: string[];
  parallel: number;
  timeoutMs: number;
  continueOnFailure: boolean;
  /** the SUT the CLI stood up (its SutState.data and when it started), to attach to; none: the runner stands the app up (scheduled runs) */
  sut?: { runId: string; startedAt: string; data: unknown };
  /** a run spread over runner pods (`--workers N`): this TestRun's runner runs share `index` of `count` */
  shard?: { index: number; count: number };
  /** the run's sync server (its Service's DNS name) and the run's name there; the token is in the Secret */
  sync?: { url: string; run: string };
  /** the runner fetches this Git source itself into `dir` (credentials, if any, in the Secret: GIT_AUTH_KEY); no commit: the ref's newest */
  git?: TestRunGit;
}

export type TestRunGit = Omit<RemoteGitSource, 'auth' | 'commit'> & { commit?: string };

/** the Secret's key of a Git source's credentials ({ username, password } as JSON) */
export const GIT_AUTH_KEY = 'git-auth.json';

/** A request's Git source split: what a TestRun's spec may show, and the Secret's entry of its credentials. */
export function gitParts(git: RemoteGitSource | undefined, opts: { pinned: boolean }): { spec: TestRunGit | undefined; secret: Record<string, string> } {
  if (!git) return { spec: undefined, secret: {} };
  const { auth, commit, ...rest } = git;
  return { spec: opts.pinned ? { ...rest, commit } : rest, secret: auth ? { [GIT_AUTH_KEY]: JSON.stringify(auth) } : {} };
}

export interface TestRunStatus {
  phase?: TestRunPhase;
  startedAt?: string;
  /** when the first step of any scenario started (run-to-first-step latency) */
  firstStepAt?: string;
  finishedAt?: string;
  /** the last LOG_WINDOW log lines; `logTotal` counts every line so far, so a reader knows what it missed */
  log?: Array<{ ts: number; runId: string; source: string; level: string; message: string }>;
  logTotal?: number;
  /** progress events (step-start, step-end, check), windowed like the log */
  events?: Array<{ scenarioRunId: string; event: Record<string, unknown> }>;
  eventTotal?: number;
  /** steps that ended, per scenario: the live view for `test status` */
  steps?: Array<{ scenario: string; name: string; state: string }>;
  /** scenarios that ended (windowed like the log, `scenarioTotal` counts all): live metrics on the host */
  scenarios?: Array<{ id: string; state: string; durationMs: number }>;
  scenarioTotal?: number;
  /** the Git source as the runner fetched it: the commit that ran, and how long the fetch took */
  git?: { url: string; ref?: string; commit: string; fetchMs: number };
  /** phase Pending: the runner waits for the app's queue, held by this TestRun */
  waitingFor?: string | null;
  /** the verdict, once the run is over */
  result?: { state: string; exitCode: number; results: unknown[]; playbooks?: unknown[]; error?: unknown };
  message?: string;
}

export interface TestRunObject extends k8s.KubernetesObject {
  spec: TestRunSpec;
  status?: TestRunStatus;
}

export function testRunCrd(): k8s.V1CustomResourceDefinition {
  // the client's name for x-kubernetes-preserve-unknown-fields (its serializer drops keys it does not know)
  const open: k8s.V1JSONSchemaProps = { type: 'object', x_kubernetes_preserve_unknown_fields: true };
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${TESTRUN.plural}.${TESTRUN.group}`, labels: { [LABELS.managedBy]: MANAGED_BY } },
    spec: {
      group: TESTRUN.group,
      scope: 'Namespaced',
      names: { plural: TESTRUN.plural, singular: 'testrun', kind: TESTRUN.kind, shortNames: ['tr'], categories: ['topas'] },
      versions: [
        {
          name: TESTRUN.version,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: [
            { name: 'App', type: 'string', jsonPath: '.spec.app' },
            { name: 'Phase', type: 'string', jsonPath: '.status.phase' },
            { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
          ],
          schema: { openAPIV3Schema: { type: 'object', properties: { spec: open, status: open } } },
        },
      ],
    },
  };
}

/** What the runner may do in its namespace: read its TestRun and write its status, and the SUT operations of scenarios. */
export function runnerRbac(namespace: string): k8s.KubernetesObject[] {
  const labels = { [LABELS.managedBy]: MANAGED_BY };
  const all = ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'];
  return [
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: RUNNER_ACCOUNT, namespace, labels } } as k8s.V1ServiceAccount,
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'Role',
      metadata: { name: RUNNER_ACCOUNT, namespace, labels },
      rules: [
        // a scheduled run (CronJob) records a TestRun of its own
        { apiGroups: [TESTRUN.group], resources: [TESTRUN.plural, `${TESTRUN.plural}/status`], verbs: ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'] },
        // one run of an app at a time (src/run-queue.ts)
        { apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['get', 'list', 'watch', 'create', 'update', 'delete'] },
        // sut.* of scenarios: rollouts (server-side apply of Secrets and Deployments), scale, kill, logs
        { apiGroups: [''], resources: ['pods', 'pods/log', 'services', 'secrets', 'configmaps', 'events'], verbs: all },
        { apiGroups: ['apps'], resources: ['deployments', 'deployments/scale', 'statefulsets', 'statefulsets/scale', 'replicasets'], verbs: all },
        { apiGroups: ['batch'], resources: ['jobs'], verbs: all },
      ],
    } as k8s.V1Role,
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata: { name: RUNNER_ACCOUNT, namespace, labels },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: RUNNER_ACCOUNT },
      subjects: [{ kind: 'ServiceAccount', name: RUNNER_ACCOUNT, namespace }],
    } as k8s.V1RoleBinding,
  ];
}

async function apply<T extends k8s.KubernetesObject>(cluster: Cluster, obj: T): Promise<T> {
  return cluster.objects.patch(obj, undefined, undefined, FIELD_MANAGER, true, k8s.PatchStrategy.ServerSideApply);
}

export interface InstallResult {
  crd: 'created' | 'present';
  namespace: string;
}

/**
 * The CRD (cluster-wide; waits until it is Established) and the runner's RBAC
 * in the cluster's namespace. Idempotent (server-side apply).
 */
export async function installTestRun(cluster: Cluster, log: (line: string) => void = () => {}): Promise<InstallResult> {
  const ext = cluster.kc.makeApiClient(k8s.ApiextensionsV1Api);
  const crd = testRunCrd();
  let created: InstallResult['crd'] = 'present';
  const existing = await ext.readCustomResourceDefinition({ name: crd.metadata!.name! }).catch((err: unknown) => {
    if (statusOf(err) === 404 || statusOf(err) === 403) return undefined;
    throw installError(err, 'read the TestRun CRD');
  });
  try {
    // applied every time (idempotent), so an older definition is brought up to date
    await apply(cluster, crd);
    if (!existing) {
      created = 'created';
      log(`installed CustomResourceDefinition ${crd.metadata!.name}`);
    }
  } catch (err) {
    // a user without cluster-wide rights can still run where an admin installed it
    if (!existing) throw installError(err, 'install the TestRun CRD');
  }
  const deadline = Date.now() + 30_000;
  for (;;) {
    const c = await ext.readCustomResourceDefinition({ name: crd.metadata!.name! });
    if (c.status?.conditions?.some((x) => x.type === 'Established' && x.status === 'True')) break;
    if (Date.now() > deadline) throw new TopasError('BACKEND_UNAVAILABLE', `kubernetes: the TestRun CRD was not Established within 30 s`);
    await new Promise((r) => setTimeout(r, 200));
  }
  try {
    for (const o of runnerRbac(cluster.namespace)) await apply(cluster, o);
  } catch (err) {
    throw installError(err, `install the runner's ServiceAccount, Role and RoleBinding in namespace ${cluster.namespace}`);
  }
  return { crd: created, namespace: cluster.namespace };
}

function installError(err: unknown, what: string): TopasError {
  const forbidden = statusOf(err) === 403;
  return new TopasError('BACKEND_UNAVAILABLE', `kubernetes: could not ${what}: ${apiMessage(err)}`, {
    hint: forbidden ? 'ask a cluster admin to run `topas kube install --namespace <ns>` once' : undefined,
    cause: err,
  });
}

/** The custom-objects client, with the TestRun's coordinates filled in. */
export class TestRuns {
  private readonly api: k8s.CustomObjectsApi;
  constructor(private readonly cluster: Cluster) {
    this.api = cluster.kc.makeApiClient(k8s.CustomObjectsApi);
  }

  private get base() {
    return { group: TESTRUN.group, version: TESTRUN.version, plural: TESTRUN.plural, namespace: this.cluster.namespace };
  }

  async create(obj: TestRunObject): Promise<TestRunObject> {
    // the first write of a new CRD's objects may be refused for a moment while the API server learns it
    const deadline = Date.now() + 10_000;
    for (;;) {
      try {
        return (await this.api.createNamespacedCustomObject({ ...this.base, body: obj })) as TestRunObject;
      } catch (err) {
        if (statusOf(err) !== 404 || Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, 250));
      }
    }
  }

  async get(name: string): Promise<TestRunObject> {
    return (await this.api.getNamespacedCustomObject({ ...this.base, name })) as TestRunObject;
  }

  async list(labelSelector?: string): Promise<TestRunObject[]> {
    const out = (await this.api.listNamespacedCustomObject({ ...this.base, ...(labelSelector ? { labelSelector } : {}) })) as { items: TestRunObject[] };
    return out.items;
  }

  async patchStatus(name: string, status: TestRunStatus): Promise<void> {
    await this.api.patchNamespacedCustomObjectStatus({ ...this.base, name, body: { status } }, k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch));
  }

  async delete(name: string): Promise<void> {
    try {
      await this.api.deleteNamespacedCustomObject({ ...this.base, name, body: { propagationPolicy: 'Background' } });
    } catch (err) {
      if (statusOf(err) !== 404) throw err;
    }
  }

  /** By the topas run id it carries (label topas.dev/test-run), else by name; undefined when neither exists (or no CRD). */
  async find(id: string): Promise<TestRunObject | undefined> {
    try {
      const byLabel = (await this.list(`${TEST_RUN_LABEL}=${labelValue(id)}`)).find((t) => t.spec?.runId === id);
      if (byLabel) return byLabel;
      return await this.get(id);
    } catch (err) {
      // 400/422: not a valid object name, so no TestRun of that name
      if (statusOf(err) === 404 || statusOf(err) === 400 || statusOf(err) === 422) return undefined;
      throw err;
    }
  }

  /**
   * A finished run's TestRun stays as history (`topas test status --backend
   * kubernetes`): no longer owned by the run's parent nor labelled with its
   * SUT's run, so tearing the SUT down leaves it. The app's oldest finished
   * ones beyond HISTORY_PER_APP go.
   */
  async keepAsHistory(name: string): Promise<void> {
    await this.api.patchNamespacedCustomObject(
      { ...this.base, name, body: { metadata: { ownerReferences: null, labels: { [LABELS.run]: null } } } },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
    );
  }

  async pruneHistory(app: string, keep = HISTORY_PER_APP): Promise<string[]> {
    const ended = (await this.list(`${LABELS.managedBy}=${MANAGED_BY},${LABELS.app}=${labelValue(app)}`))
      .filter((t) => t.status?.result && !(t.metadata?.ownerReferences ?? []).length)
      .sort(newestFirst);
    const gone = ended.slice(keep).map((t) => t.metadata!.name!);
    for (const name of gone) await this.delete(name);
    return gone;
  }

  /** TestRuns with this label selector; [] when the CRD is not installed. */
  async names(labelSelector: string): Promise<string[]> {
    try {
      return (await this.list(labelSelector)).map((t) => t.metadata!.name!);
    } catch (err) {
      if (statusOf(err) === 404) return [];
      throw err;
    }
  }
}

/** Newest first: by creation (seconds), then by the runner's start, then by name. */
export function newestFirst(a: TestRunObject, b: TestRunObject): number {
  // custom objects come back as plain JSON: the timestamp is a string
  const t = (o: TestRunObject) => Date.parse(String(o.metadata?.creationTimestamp ?? '')) || 0;
  const s = (o: TestRunObject) => Date.parse(o.status?.startedAt ?? '') || 0;
  return t(b) - t(a) || s(b) - s(a) || String(b.metadata?.name).localeCompare(String(a.metadata?.name));
}

/**
 * The entries of a status window (`log`, `events`, `scenarios`) not seen yet:
 * the window holds the last entries of `total`; `seen` counts those handed on
 * before. Also says how many fell out of the window unseen.
 */
export function unseen<T>(window: T[] | undefined, total: number | undefined, seen: number): { entries: T[]; missed: number; total: number } {
  const w = window ?? [];
  const all = total ?? w.length;
  const firstInWindow = all - w.length;
  return { entries: w.slice(Math.max(0, seen - firstInWindow)), missed: Math.max(0, firstInWindow - seen), total: all };
}
