import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { serializeError, type Io } from 'topas';
import { runLoadWorker, useParentPort, writeRemoteFiles, type FromLoadWorker, type ParentPort, type ToLoadWorker } from 'topas/runner';
import { apiMessage, clusterOptionsFromEnv, connect, type Cluster } from './cluster';
import { ChannelEndpoint } from './channel';
import { configMapStore, followConfigMaps } from './loadrun';
import { channelName, envSecretName, filesConfigMapName } from './load-job';
import { filesFromConfigMap } from './load-files';

const INDEX_ANNOTATION = 'batch.kubernetes.io/job-completion-index';
/** after shutdown, how long the last messages (load-done went before) may take to be acknowledged */
const CLOSE_FLUSH_MS = 5000;

/**
 * `topas kube load-worker --loadrun NAME`, in a pod of the run's Indexed Job:
 * core's load worker (the same code as a thread or a process), its port to
 * the CLI a channel ConfigMap through the API server. It takes part only as
 * its channel's owner (the pod the CLI saw first for its index), and leaves
 * when the channel says the CLI gave it up or the channel is deleted.
 */
export async function serveLoadWorker(loadRun: string, io: Io): Promise<void> {
  const cluster = connect(clusterOptionsFromEnv(io.env));
  const podName = io.env.POD_NAME ?? os.hostname();
  const index = await ownIndex(cluster, podName, io.env);
  const name = channelName(loadRun, index);
  const say = (line: string) => io.stderr.write(`topas load-worker ${index} (${podName}): ${line}\n`);
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-load-'));
  const env = await readEnv(cluster, envSecretName(loadRun));
  // the script's neighbours (Lua modules, data files), where the script will be
  const files = await cluster.core.readNamespacedConfigMap({ name: filesConfigMapName(loadRun), namespace: cluster.namespace });
  writeRemoteFiles(workDir, filesFromConfigMap(files));
  let handler: ((msg: ToLoadWorker) => void) | undefined;
  const early: ToLoadWorker[] = [];
  const deliver = (raw: unknown) => {
    const msg = localize(raw as ToLoadWorker, workDir, env);
    // said, not hidden: a start that arrives after its instant makes the first iterations a catch-up burst
    if (msg.type === 'load-start' && Date.now() > msg.startMs + 50) {
      channel.send({ type: 'log', line: { ts: Date.now(), runId: `worker-${index}`, source: `worker-${index}`, level: 'warn', message: `the start reached this pod ${Math.round(Date.now() - msg.startMs)} ms after its instant (through the API server)` } });
    }
    if (handler) handler(msg);
    else early.push(msg);
  };
  const channel = new ChannelEndpoint<ToLoadWorker, FromLoadWorker>(configMapStore(cluster, name), deliver, { side: 'up', onWriteError: (err) => say(`a message was not written (retried): ${apiMessage(err)}`) });
  let leaving = false;
  const leave = (code: number, why: string) => {
    if (leaving) return;
    leaving = true;
    say(why);
    channel.close();
    stop();
    // a client's keep-alive socket must not hold the pod (and the Job) open
    setTimeout(() => process.exit(code), 100).unref();
  };
  const stop = followConfigMaps(
    cluster,
    { fieldSelector: `metadata.name=${name}` },
    (ev) => {
      if (ev.type === 'DELETED') return leave(0, 'the channel was deleted: the run is over');
      const data = ev.object.data ?? {};
      // until the CLI names the channel's owner, nothing is read: a pod that is not it never sees the run
      if (!data.owner) return;
      if (data.owner !== podName) return leave(0, `the channel belongs to pod ${data.owner}: this pod is a replacement and takes no part`);
      if (data.closed) return leave(0, `the CLI gave this worker up (${data.closed})`);
      channel.receive(data);
    },
    (err) => say(`watch: ${apiMessage(err)} (watching again)`),
  );
  const port: ParentPort<ToLoadWorker, FromLoadWorker> = {
    post: (msg) => channel.send(msg),
    on: (h) => {
      handler = h;
      for (const m of early.splice(0)) h(m);
    },
    close: () => {
      void channel.flush(CLOSE_FLUSH_MS).then(() => leave(0, 'shut down by the CLI'));
    },
  };
  // an uncaught error crosses as the worker's fatal message, then the pod ends (exit 1): the CLI loses this worker
  const crash = (err: unknown) => {
    channel.send({ type: 'fatal', error: serializeError(err) });
    void channel.flush(2000).then(() => leave(1, `crashed: ${(err as Error)?.message ?? String(err)}`));
  };
  process.on('uncaughtException', crash);
  process.on('unhandledRejection', crash);
  // the pod deleted (the run ended, Ctrl-C on the CLI): nothing to work for
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => leave(0, `${sig}: the pod is being deleted`));
  useParentPort(port);
  say(`serving through ConfigMap ${name}`);
  runLoadWorker();
}

/** This pod's completion index: the Job controller's env variable, else its annotation (a kubelet that does not resolve it). */
async function ownIndex(cluster: Cluster, podName: string, env: NodeJS.ProcessEnv): Promise<number> {
  const fromEnv = Number(env.JOB_COMPLETION_INDEX);
  if (env.JOB_COMPLETION_INDEX && Number.isInteger(fromEnv)) return fromEnv;
  const pod = await cluster.core.readNamespacedPod({ name: podName, namespace: cluster.namespace });
  const index = Number(pod.metadata?.annotations?.[INDEX_ANNOTATION] ?? pod.metadata?.labels?.[INDEX_ANNOTATION]);
  if (!Number.isInteger(index)) throw new Error(`pod ${podName} has no ${INDEX_ANNOTATION}: not a pod of an Indexed Job`);
  return index;
}

/**
 * The CLI's init names the script by its path on the CLI's machine: here it
 * is the text it sent, written into this pod's folder (where require() and
 * data files resolve too), so nothing of the CLI's file system is assumed.
 * Its variables come from the run's Secret (the channel does not carry them).
 */
export function localize(msg: ToLoadWorker, dir: string, env: Record<string, string>): ToLoadWorker {
  if (msg.type !== 'load-init') return msg;
  const file = path.join(dir, path.basename(msg.init.file) || 'load.lua');
  if (msg.init.source !== undefined) fs.writeFileSync(file, msg.init.source);
  return { ...msg, init: { ...msg.init, file, baseDir: dir, env: { ...msg.init.env, ...env } } };
}

async function readEnv(cluster: Cluster, name: string): Promise<Record<string, string>> {
  const s = await cluster.core.readNamespacedSecret({ name, namespace: cluster.namespace });
  const raw = s.data?.['env.json'];
  return raw ? (JSON.parse(Buffer.from(raw, 'base64').toString('utf8')) as Record<string, string>) : {};
}
