import type * as k8s from '@kubernetes/client-node';
import { TopasError, type AppSpec, type RemoteRunRequest, type ScheduleContext } from 'topas';
import { apiMessage, type Cluster } from './cluster';
import { LABELS, MANAGED_BY, labelValue, objectName } from './manifests';
import { runnerImage, runnerJobSpec } from './runner-job';
import { gitParts, installTestRun, type TestRunGit } from './testrun';

/** What a scheduled run's ConfigMap holds besides the files: the run's settings (the request without files and env). */
export type ScheduledRun = Omit<RemoteRunRequest, 'files' | 'env' | 'git'> & { app: string; cron: string; git?: TestRunGit };

/**
 * `topas test schedule --cron EXPR --backend kubernetes`: a CronJob (one run at
 * a time: concurrencyPolicy Forbid) whose Jobs run `topas kube runner --schedule
 * NAME`: each stands the app up inside the cluster, runs the scenarios from the
 * ConfigMap against its Service DNS names, records a TestRun and tears down.
 * The ConfigMap, Secret and CronJob share one name and the app's labels; they
 * stay until deleted (the CronJob owns the other two).
 */
export async function scheduleCronJob(cluster: Cluster, spec: AppSpec, request: RemoteRunRequest, cron: string, ctx: ScheduleContext): Promise<{ id: string; description: string }> {
  await installTestRun(cluster, ctx.log);
  const ns = cluster.namespace;
  const name = objectName(spec.name, 'cron', request.runId);
  const labels = { [LABELS.managedBy]: MANAGED_BY, [LABELS.app]: labelValue(spec.name), [LABELS.kind]: 'cron', [LABELS.component]: 'cron', 'topas.dev/schedule': name };
  const { files, env, git: source, ...settings } = request;
  // a Git source over http(s): each firing fetches the ref's newest commit and resolves the targets as given again
  const git = gitParts(source, { pinned: false });
  const run: ScheduledRun = { ...settings, ...(git.spec ? { git: git.spec, targets: git.spec.targets } : {}), app: spec.name, cron };
  const deadlineS = Math.ceil((request.timeoutMs * Math.max(1, request.targets.length)) / 1000) + 600;
  const cronJob: k8s.V1CronJob = {
    apiVersion: 'batch/v1',
    kind: 'CronJob',
    metadata: { name, namespace: ns, labels },
    spec: {
      schedule: cron,
      concurrencyPolicy: 'Forbid',
      successfulJobsHistoryLimit: 3,
      failedJobsHistoryLimit: 3,
      jobTemplate: { metadata: { labels }, spec: runnerJobSpec({ ns, labels, image: runnerImage(ctx.processEnv), deadlineS, args: ['--schedule', name], attachOnly: false }) },
    },
  };
  let made: k8s.V1CronJob;
  try {
    made = await cluster.batch.createNamespacedCronJob({ namespace: ns, body: cronJob });
  } catch (err) {
    throw new TopasError('BACKEND_UNAVAILABLE', `kubernetes: the CronJob was refused: ${apiMessage(err)}`, { cause: err });
  }
  const owner = [{ apiVersion: 'batch/v1', kind: 'CronJob', name, uid: made.metadata!.uid!, blockOwnerDeletion: false }];
  await cluster.core.createNamespacedConfigMap({
    namespace: ns,
    body: { metadata: { name, namespace: ns, labels, ownerReferences: owner }, data: { 'index.json': JSON.stringify(files.map((f, i) => ({ key: `f${i}`, path: f.path }))), 'run.json': JSON.stringify(run) }, binaryData: Object.fromEntries(files.map((f, i) => [`f${i}`, f.content.toString('base64')])) },
  });
  await cluster.core.createNamespacedSecret({ namespace: ns, body: { metadata: { name, namespace: ns, labels, ownerReferences: owner }, type: 'Opaque', stringData: { 'env.json': JSON.stringify(env), ...git.secret } } });
  return { id: name, description: `CronJob ${name} in namespace ${ns}, schedule "${cron}" (delete it with: kubectl delete cronjob ${name} -n ${ns})` };
}
