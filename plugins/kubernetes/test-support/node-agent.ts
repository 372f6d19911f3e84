import { execFileSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as https from 'node:https';
import * as os from 'node:os';
import * as path from 'node:path';
import type { AddressInfo } from 'node:net';
import Docker from 'dockerode';
import * as k8s from '@kubernetes/client-node';
import { statusOf } from '../src/cluster';
import { sleep, withTimeout } from '../src/wait';
import { PodEvents } from './pod-events';
import { API_HOST_ALIAS, ApiRelay, writeServiceAccountFiles } from './pod-api-access';

/**
 * A kubelet stand-in for tests (no kubelet runs on these machines): registers a
 * Node, renews its Lease, and runs the pods the scheduler binds to it as Docker
 * containers on a network of its own, from images that exist locally (never
 * pulled). It reports phase, pod IP, container states and the Ready condition
 * through the pod status subresource, and gives each container the names of
 * the Services that select its pod as network aliases (`<svc>` and
 * `<svc>.<ns>.svc.cluster.local`), so pods reach Services by DNS name. Docker
 * DNS resolves a Service name to its pods, so a Service's `port` must equal
 * its `targetPort` here (there is no kube-proxy).
 *
 * Probes run inside the pod's network namespace (`docker exec`, bash's
 * /dev/tcp for httpGet and tcpSocket), so the host never sends traffic to a pod
 * IP. Container logs are served to the API server (`kubectl logs`,
 * readNamespacedPodLog) from a small HTTPS endpoint on 127.0.0.1, as a kubelet
 * would. One container per pod (the first); init containers are not run.
 *
 * Pods reach the API server as under a kubelet: KUBERNETES_SERVICE_HOST/PORT
 * name a TCP relay the agent runs on its network's gateway (forwarding to the
 * API server on 127.0.0.1), under the host name `kubernetes.default.svc` (a
 * SAN of the serving certificate, so in-cluster clients verify it), and the
 * service-account files (a TokenRequest token for the pod's
 * serviceAccountName, the cluster CA, the namespace) are bind-mounted
 * read-only at /var/run/secrets/kubernetes.io/serviceaccount unless the pod
 * says automountServiceAccountToken: false.
 */
export interface NodeAgentOptions {
  kubeconfig: k8s.KubeConfig;
  nodeName?: string;
  log?: (line: string) => void;
}

/** Label on every container and network the agent makes: `topas.kube-agent=<node name>`. */
export const AGENT_LABEL = 'topas.kube-agent';
/** Label on each pod's container: `<namespace>/<pod name>`. */
export const POD_LABEL = 'topas.kube-pod';
const LEASE_RENEW_MS = 10_000;
const LEASE_SECONDS = 40;
const NODE_STATUS_MS = 20_000;
const DEFAULT_PROBE_PERIOD_S = 10;
const STOP_GRACE_S = 10;
const SA_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

interface PodState {
  uid: string;
  namespace: string;
  name: string;
  containerName: string;
  image: string;
  containerId?: string;
  ip?: string;
  ready: boolean;
  restarts: number;
  startedAt?: string;
  terminated?: { exitCode: number; reason: string; finishedAt: string };
  probeSuccesses: number;
  probeFailures: number;
  timer?: NodeJS.Timeout;
  /** serializes work on one pod */
  chain: Promise<void>;
  deleting: boolean;
  lastReported?: string;
  /** Events recorded for this pod, by reason and message: repeats raise the count, as a kubelet's do */
  events: Map<string, { name: string; count: number }>;
  /** host folder with the service-account files, bind-mounted into the container */
  saDir?: string;
}

export class NodeAgent {
  readonly nodeName: string;
  readonly network: string;
  private readonly kc: k8s.KubeConfig;
  private readonly core: k8s.CoreV1Api;
  private readonly coordination: k8s.CoordinationV1Api;
  private readonly docker = new Docker();
  private readonly log: (line: string) => void;
  private readonly pods = new Map<string, PodState>();
  private informer?: k8s.Informer<k8s.V1Pod>;
  private serviceInformer?: k8s.Informer<k8s.V1Service> & k8s.ObjectCache<k8s.V1Service>;
  private timers: NodeJS.Timeout[] = [];
  private logServer?: https.Server;
  private relay?: ApiRelay;
  private gateway = '';
  private relayPort = 0;
  private stopped = false;
  private readonly events: PodEvents;

  constructor(opts: NodeAgentOptions) {
    this.kc = opts.kubeconfig;
    this.nodeName = opts.nodeName ?? `topas-agent-${crypto.randomBytes(3).toString('hex')}`;
    this.network = `topas-kube-${this.nodeName}`;
    this.core = this.kc.makeApiClient(k8s.CoreV1Api);
    this.coordination = this.kc.makeApiClient(k8s.CoordinationV1Api);
    this.log = opts.log ?? (() => {});
    this.events = new PodEvents(this.core, this.nodeName, (l) => this.debug(l));
  }

  async start(): Promise<void> {
    await this.docker.createNetwork({ Name: this.network, Driver: 'bridge', CheckDuplicate: true, Labels: { [AGENT_LABEL]: this.nodeName } });
    await this.startApiRelay();
    const logPort = await this.startLogServer();
    await this.registerNode(logPort);
    await this.renewLease();
    await this.untilSchedulable();
    this.timers.push(setInterval(() => void this.renewLease().catch((e: Error) => this.log(`lease: ${e.message}`)), LEASE_RENEW_MS));
    this.timers.push(setInterval(() => void this.reportNode().catch((e: Error) => this.log(`node status: ${e.message}`)), NODE_STATUS_MS));
    // Services first: a pod's aliases come from the Services that select it when its container starts
    const services = new k8s.ListWatch<k8s.V1Service>('/api/v1/services', new k8s.Watch(this.kc), () => this.core.listServiceForAllNamespaces(), false);
    this.serviceInformer = services;
    await services.start();
    const fieldSelector = `spec.nodeName=${this.nodeName}`;
    const informer = new k8s.ListWatch<k8s.V1Pod>('/api/v1/pods', new k8s.Watch(this.kc), () => this.core.listPodForAllNamespaces({ fieldSelector }), false, undefined, fieldSelector);
    this.informer = informer;
    informer.on('add', (p) => this.onPod(p));
    informer.on('update', (p) => this.onPod(p));
    informer.on('delete', (p) => this.onPodGone(p));
    informer.on('error', (err) => {
      if (this.stopped) return;
      this.log(`pod watch: ${String((err as Error)?.message ?? err)}; restarting`);
      setTimeout(() => void informer.start().catch(() => {}), 1000).unref();
    });
    await informer.start();
    this.log(`node ${this.nodeName} registered; containers on network ${this.network}`);
  }

  /** Removes every container and the network, deletes the Node and its Lease. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    await this.informer?.stop();
    await this.serviceInformer?.stop();
    for (const p of this.pods.values()) if (p.timer) clearTimeout(p.timer);
    await Promise.all([...this.pods.values()].map((p) => p.chain.catch(() => {})));
    const containers = await this.docker.listContainers({ all: true, filters: { label: [`${AGENT_LABEL}=${this.nodeName}`] } });
    await Promise.all(containers.map((c) => this.docker.getContainer(c.Id).remove({ force: true }).catch(() => {})));
    await this.docker.getNetwork(this.network).remove().catch(() => {});
    this.logServer?.close();
    this.relay?.stop();
    for (const p of this.pods.values()) removeDir(p.saDir);
    await this.coordination.deleteNamespacedLease({ name: this.nodeName, namespace: 'kube-node-lease' }).catch(() => {});
    await this.core.deleteNode({ name: this.nodeName }).catch(() => {});
  }

  // ------------------------------------------------------------ the API server, seen from pods

  /** The relay pods dial for the API server, on the network's gateway (the host, as containers see it). */
  private async startApiRelay(): Promise<void> {
    const info = (await this.docker.getNetwork(this.network).inspect()) as { IPAM?: { Config?: Array<{ Gateway?: string }> } };
    const gw = info.IPAM?.Config?.find((c) => c.Gateway)?.Gateway;
    if (!gw) throw new Error(`network ${this.network} has no gateway address`);
    this.gateway = gw;
    this.relay = new ApiRelay();
    this.relayPort = await this.relay.start(gw, this.kc.getCurrentCluster()!.server);
    this.log(`API server relay on ${gw}:${this.relayPort} (pods dial ${API_HOST_ALIAS})`);
  }

  /** The service-account files of a pod, in a private host folder to bind-mount. */
  private serviceAccountFiles(pod: k8s.V1Pod): Promise<string> {
    return writeServiceAccountFiles(this.core, this.kc, pod);
  }

  // ------------------------------------------------------------ node and lease

  private async registerNode(logPort: number): Promise<void> {
    await this.core.createNode({
      body: {
        metadata: { name: this.nodeName, labels: { 'kubernetes.io/hostname': this.nodeName, 'kubernetes.io/os': 'linux', 'kubernetes.io/arch': 'amd64', [AGENT_LABEL]: 'true' } },
        spec: {},
      },
    });
    await this.reportNode(logPort);
  }

  private logPort = 0;

  /**
   * The node lifecycle controller may see the Node between its creation and
   * its first Ready status and taint it not-ready for a moment: start() returns
   * once that is gone (bounded), so pods can be scheduled at once.
   */
  private async untilSchedulable(): Promise<void> {
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline) {
      const node = await this.core.readNode({ name: this.nodeName });
      if (!(node.spec?.taints ?? []).some((t) => t.key === 'node.kubernetes.io/not-ready' || t.key === 'node.kubernetes.io/unreachable')) return;
      await sleep(200);
    }
    this.log(`node ${this.nodeName} still tainted not-ready after 15 s`);
  }

  private async reportNode(logPort = this.logPort): Promise<void> {
    this.logPort = logPort;
    const now = new Date();
    const capacity = { cpu: '16', memory: '64Gi', pods: '110' };
    const status: k8s.V1NodeStatus = {
      capacity,
      allocatable: capacity,
      // no Hostname address: the API server would try it first to fetch logs, and it resolves nowhere
      addresses: [{ type: 'InternalIP', address: '127.0.0.1' }],
      daemonEndpoints: { kubeletEndpoint: { Port: logPort } },
      conditions: [{ type: 'Ready', status: 'True', reason: 'KubeletReady', message: 'topas node agent (docker)', lastHeartbeatTime: now, lastTransitionTime: now }],
      nodeInfo: {
        architecture: 'amd64',
        bootID: '',
        containerRuntimeVersion: 'docker://topas-node-agent',
        kernelVersion: os.release(),
        kubeProxyVersion: '',
        kubeletVersion: 'v1.37.1',
        machineID: '',
        operatingSystem: 'linux',
        osImage: 'topas node agent',
        systemUUID: '',
      },
    };
    await this.core.patchNodeStatus({ name: this.nodeName, body: { status } }, mergePatch());
  }

  private async renewLease(): Promise<void> {
    const spec: k8s.V1LeaseSpec = { holderIdentity: this.nodeName, leaseDurationSeconds: LEASE_SECONDS, renewTime: new k8s.V1MicroTime() };
    try {
      const lease = await this.coordination.readNamespacedLease({ name: this.nodeName, namespace: 'kube-node-lease' });
      lease.spec = { ...lease.spec, ...spec };
      await this.coordination.replaceNamespacedLease({ name: this.nodeName, namespace: 'kube-node-lease', body: lease });
    } catch (err) {
      if (statusOf(err) !== 404) throw err;
      await this.coordination.createNamespacedLease({ namespace: 'kube-node-lease', body: { metadata: { name: this.nodeName }, spec } });
    }
  }

  // ------------------------------------------------------------ pods

  private debug(line: string): void {
    if (process.env.TOPAS_NODE_AGENT_DEBUG) this.log(`${new Date().toISOString()} ${line}`);
  }

  private onPod(pod: k8s.V1Pod): void {
    const uid = pod.metadata?.uid;
    this.debug(`event: pod ${pod.metadata?.namespace}/${pod.metadata?.name} phase=${pod.status?.phase} deleting=${Boolean(pod.metadata?.deletionTimestamp)}`);
    if (!uid || this.stopped) return;
    let state = this.pods.get(uid);
    if (!state) {
      if (pod.metadata?.deletionTimestamp) {
        this.enqueueFinalDelete(pod);
        return;
      }
      if (pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed') return;
      state = {
        uid,
        namespace: pod.metadata!.namespace!,
        name: pod.metadata!.name!,
        containerName: pod.spec!.containers[0].name,
        image: pod.spec!.containers[0].image ?? '',
        ready: false,
        restarts: 0,
        probeSuccesses: 0,
        probeFailures: 0,
        chain: Promise.resolve(),
        deleting: false,
        events: new Map(),
      };
      this.pods.set(uid, state);
      const s = state;
      this.enqueue(s, () => this.runPod(s, pod));
      return;
    }
    if (pod.metadata?.deletionTimestamp && !state.deleting) {
      state.deleting = true;
      const s = state;
      if (s.timer) clearTimeout(s.timer);
      // at once, not behind a probe in the pod's queue: a kubelet's pod leaves its Services' endpoints when its deletion starts
      void this.leaveServices(s);
      this.enqueue(s, () => this.deletePod(s, pod.spec?.terminationGracePeriodSeconds ?? STOP_GRACE_S));
    }
  }

  private onPodGone(pod: k8s.V1Pod): void {
    const state = pod.metadata?.uid ? this.pods.get(pod.metadata.uid) : undefined;
    if (!state) return;
    state.deleting = true;
    if (state.timer) clearTimeout(state.timer);
    this.enqueue(state, async () => {
      await this.removeContainer(state, 0);
      this.pods.delete(state.uid);
    });
  }

  private enqueue(state: PodState, work: () => Promise<void>): void {
    state.chain = state.chain.then(work).catch((err: Error) => this.log(`pod ${state.namespace}/${state.name}: ${err.message}`));
  }

  /** A pod with a deletionTimestamp that this agent never ran (e.g. deleted before it started): finish the deletion. */
  private enqueueFinalDelete(pod: k8s.V1Pod): void {
    void this.core
      .deleteNamespacedPod({ name: pod.metadata!.name!, namespace: pod.metadata!.namespace!, gracePeriodSeconds: 0, body: { gracePeriodSeconds: 0, preconditions: { uid: pod.metadata!.uid } } })
      .catch(() => {});
  }

  private async runPod(state: PodState, pod: k8s.V1Pod): Promise<void> {
    const container = pod.spec!.containers[0];
    this.debug(`pod ${state.namespace}/${state.name}: starting ${container.image}`);
    const image = container.image ?? '';
    try {
      await this.docker.getImage(image).inspect();
    } catch {
      await this.events.record(state, 'Warning', 'ErrImageNeverPull', `Container image "${image}" is not present on this node and the agent never pulls`);
      await this.patchStatus(state, {
        phase: 'Pending',
        conditions: [cond('PodScheduled', true), cond('Ready', false, 'ContainersNotReady')],
        containerStatuses: [{ name: state.containerName, image, imageID: '', ready: false, restartCount: 0, state: { waiting: { reason: 'ErrImageNeverPull', message: `image ${image} is not on this node and the agent never pulls` } } }],
      });
      return;
    }
    const env = { ...(await this.resolveEnv(pod, container)), ...this.apiEnv() };
    const aliases = this.aliasesFor(pod);
    const binds: string[] = [];
    if (pod.spec?.automountServiceAccountToken !== false) {
      state.saDir = await this.serviceAccountFiles(pod);
      binds.push(`${state.saDir}:${SA_DIR}:ro`);
    }
    const created = await this.docker.createContainer({
      name: `k8s-${state.namespace}-${state.name}-${state.uid.slice(0, 8)}`.replace(/[^A-Za-z0-9_.-]/g, '-').slice(0, 120),
      Image: image,
      ...(container.command ? { Entrypoint: container.command } : {}),
      ...(container.args ? { Cmd: container.args } : {}),
      Env: Object.entries(env).map(([k, v]) => `${k}=${v}`),
      ...(container.workingDir ? { WorkingDir: container.workingDir } : {}),
      Hostname: (pod.spec?.hostname ?? state.name).slice(0, 63),
      Labels: { [AGENT_LABEL]: this.nodeName, [POD_LABEL]: `${state.namespace}/${state.name}`, 'topas.kube-pod-uid': state.uid },
      HostConfig: { NetworkMode: this.network, Binds: binds, ExtraHosts: [`${API_HOST_ALIAS}:${this.gateway}`, `kubernetes.default:${this.gateway}`, `kubernetes:${this.gateway}`] },
      NetworkingConfig: { EndpointsConfig: { [this.network]: { Aliases: aliases } } },
    });
    state.containerId = created.id;
    if (state.deleting) return;
    await created.start();
    const info = await created.inspect();
    state.ip = info.NetworkSettings.Networks[this.network]?.IPAddress;
    state.startedAt = new Date().toISOString();
    const probe = container.readinessProbe;
    state.ready = !probe;
    this.debug(`pod ${state.namespace}/${state.name}: running at ${state.ip}`);
    await this.report(state);
    this.watchExit(state, pod);
    this.schedule(state, pod, (probe?.initialDelaySeconds ?? 0) * 1000);
  }

  /** The pod's names on the agent's network: its own and those of the Services that select it. */
  private aliasesFor(pod: k8s.V1Pod): string[] {
    const ns = pod.metadata!.namespace!;
    const labels = pod.metadata?.labels ?? {};
    const out = new Set<string>([pod.metadata!.name!]);
    if (pod.spec?.hostname && pod.spec.subdomain) out.add(`${pod.spec.hostname}.${pod.spec.subdomain}.${ns}.svc.cluster.local`);
    for (const svc of this.serviceInformer?.list(ns) ?? []) {
      const sel = svc.spec?.selector;
      if (!sel || Object.keys(sel).length === 0) continue;
      if (!Object.entries(sel).every(([k, v]) => labels[k] === v)) continue;
      const name = svc.metadata!.name!;
      out.add(name);
      out.add(`${name}.${ns}`);
      out.add(`${name}.${ns}.svc`);
      out.add(`${name}.${ns}.svc.cluster.local`);
    }
    return [...out];
  }

  /** What a kubelet gives every container: where the API server is (here: the relay, by a name its certificate carries). */
  private apiEnv(): Record<string, string> {
    const port = String(this.relayPort);
    return { KUBERNETES_SERVICE_HOST: API_HOST_ALIAS, KUBERNETES_SERVICE_PORT: port, KUBERNETES_SERVICE_PORT_HTTPS: port };
  }

  private async resolveEnv(pod: k8s.V1Pod, c: k8s.V1Container): Promise<Record<string, string>> {
    const namespace = pod.metadata!.namespace!;
    const out: Record<string, string> = {};
    const secrets = new Map<string, Record<string, string>>();
    const secret = async (name: string): Promise<Record<string, string>> => {
      let data = secrets.get(name);
      if (!data) {
        const s = await this.core.readNamespacedSecret({ name, namespace });
        data = Object.fromEntries(Object.entries(s.data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]));
        secrets.set(name, data);
      }
      return data;
    };
    for (const from of c.envFrom ?? []) {
      if (from.secretRef?.name) Object.assign(out, prefixed(await secret(from.secretRef.name), from.prefix));
      if (from.configMapRef?.name) {
        const cm = await this.core.readNamespacedConfigMap({ name: from.configMapRef.name, namespace });
        Object.assign(out, prefixed(cm.data ?? {}, from.prefix));
      }
    }
    for (const e of c.env ?? []) {
      if (e.value !== undefined) out[e.name] = e.value.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (m, n: string) => out[n] ?? m);
      else if (e.valueFrom?.secretKeyRef) {
        const v = (await secret(e.valueFrom.secretKeyRef.name!))[e.valueFrom.secretKeyRef.key];
        if (v !== undefined) out[e.name] = v;
      } else if (e.valueFrom?.fieldRef?.fieldPath) {
        const field: Record<string, string | undefined> = { 'metadata.name': pod.metadata?.name, 'metadata.namespace': namespace, 'metadata.uid': pod.metadata?.uid, 'spec.nodeName': this.nodeName, 'spec.serviceAccountName': pod.spec?.serviceAccountName };
        // metadata.annotations['k'] / metadata.labels['k'] (an Indexed Job's JOB_COMPLETION_INDEX comes so)
        const keyed = /^metadata\.(annotations|labels)\['([^']+)'\]$/.exec(e.valueFrom.fieldRef.fieldPath);
        const v = keyed ? pod.metadata?.[keyed[1] as 'annotations' | 'labels']?.[keyed[2]] : field[e.valueFrom.fieldRef.fieldPath];
        if (v !== undefined) out[e.name] = v;
      }
    }
    return out;
  }

  /** The readiness loop of one pod (exits are seen by watchExit). */
  private schedule(state: PodState, pod: k8s.V1Pod, delayMs: number): void {
    const probe = pod.spec!.containers[0].readinessProbe;
    if (!probe || this.stopped || state.deleting) return;
    state.timer = setTimeout(() => this.enqueue(state, () => this.tick(state, pod, probe)), delayMs);
    state.timer.unref();
  }

  private async tick(state: PodState, pod: k8s.V1Pod, probe: k8s.V1Probe): Promise<void> {
    if (this.stopped || state.deleting || !state.containerId || state.terminated) return;
    const { ok, output } = await this.probe(state.containerId, probe, pod.spec!.containers[0]);
    if (!ok) await this.events.record(state, 'Warning', 'Unhealthy', `Readiness probe failed: ${output}`);
    if (ok) {
      state.probeFailures = 0;
      state.probeSuccesses++;
      if (state.probeSuccesses >= (probe.successThreshold ?? 1)) state.ready = true;
    } else {
      state.probeSuccesses = 0;
      state.probeFailures++;
      if (state.probeFailures >= (probe.failureThreshold ?? 3)) state.ready = false;
    }
    await this.report(state);
    this.schedule(state, pod, Math.max(1, probe.periodSeconds ?? DEFAULT_PROBE_PERIOD_S) * 1000);
  }

  /** When the container exits: restart it (restartPolicy) or report the pod Succeeded/Failed with the exit code. */
  private watchExit(state: PodState, pod: k8s.V1Pod): void {
    const id = state.containerId;
    if (!id) return;
    void this.docker
      .getContainer(id)
      .wait()
      .catch(() => undefined)
      .then(() => {
        if (this.stopped || state.deleting || state.containerId !== id) return;
        this.enqueue(state, () => this.onExit(state, pod, id));
      });
  }

  private async onExit(state: PodState, pod: k8s.V1Pod, id: string): Promise<void> {
    if (this.stopped || state.deleting || state.containerId !== id) return;
    const info = await this.docker.getContainer(id).inspect();
    if (info.State.Running) return this.watchExit(state, pod);
    const exitCode = info.State.ExitCode;
    const policy = pod.spec?.restartPolicy ?? 'Always';
    const probe = pod.spec!.containers[0].readinessProbe;
    if (policy === 'Always' || (policy === 'OnFailure' && exitCode !== 0)) {
      state.restarts++;
      state.ready = false;
      state.lastReported = undefined;
      await this.report(state);
      await this.events.record(state, 'Warning', 'BackOff', `Back-off restarting failed container ${state.containerName} in pod ${state.name} (exit code ${exitCode})`);
      // back off as a kubelet does, briefly: 1 s, 2 s, 4 s … at most 10 s
      await sleep(1000 * Math.min(2 ** (state.restarts - 1), 10));
      if (this.stopped || state.deleting || state.containerId !== id) return;
      await this.docker.getContainer(id).start();
      const again = await this.docker.getContainer(id).inspect();
      state.ip = again.NetworkSettings.Networks[this.network]?.IPAddress;
      state.startedAt = new Date().toISOString();
      state.ready = !probe;
      state.probeSuccesses = 0;
      await this.report(state);
      this.watchExit(state, pod);
      if (state.timer) clearTimeout(state.timer);
      this.schedule(state, pod, (probe?.initialDelaySeconds ?? 0) * 1000);
      return;
    }
    state.ready = false;
    state.terminated = { exitCode, reason: exitCode === 0 ? 'Completed' : 'Error', finishedAt: info.State.FinishedAt };
    if (state.timer) clearTimeout(state.timer);
    await this.report(state);
  }

  /** Runs a probe inside the container (its own network namespace), bounded by the probe's timeout; `output` says why it failed. */
  private async probe(containerId: string, probe: k8s.V1Probe, container: k8s.V1Container): Promise<{ ok: boolean; output: string }> {
    const port = (p: number | string | undefined): number | undefined => (typeof p === 'number' ? p : /^\d+$/.test(String(p)) ? Number(p) : container.ports?.find((cp) => cp.name === p)?.containerPort);
    let argv: string[];
    if (probe.exec?.command) argv = probe.exec.command;
    else if (probe.tcpSocket) argv = ['bash', '-c', `exec 3<>/dev/tcp/127.0.0.1/${port(probe.tcpSocket.port)}`];
    else if (probe.httpGet) {
      const p = port(probe.httpGet.port);
      const pathPart = (probe.httpGet.path ?? '/').replace(/[^A-Za-z0-9/._~?&=%:+-]/g, '');
      // says the status as a kubelet's probe does when it is not 2xx/3xx
      argv = ['bash', '-c', `exec 3<>/dev/tcp/127.0.0.1/${p} && printf 'GET ${pathPart} HTTP/1.0\\r\\nHost: localhost\\r\\nUser-Agent: kube-probe/1.37\\r\\n\\r\\n' >&3 && read -r proto code rest <&3 && { [ "$code" -ge 200 ] && [ "$code" -lt 400 ] || { echo "HTTP probe failed with statuscode: $code"; exit 1; }; }`];
    } else return { ok: true, output: '' };
    const timeoutSeconds = Math.max(1, probe.timeoutSeconds ?? 1);
    try {
      const r = await withTimeout(this.exec(containerId, argv), timeoutSeconds * 1000, 'probe');
      return { ok: r.code === 0, output: r.output.trim().split('\n').pop() || `exit code ${r.code}` };
    } catch {
      return { ok: false, output: `timeout: no answer within ${timeoutSeconds}s` };
    }
  }

  private async exec(containerId: string, argv: string[]): Promise<{ code: number; output: string }> {
    const exec = await this.docker.getContainer(containerId).exec({ Cmd: argv, AttachStdout: true, AttachStderr: true });
    const stream = await exec.start({ hijack: true, stdin: false });
    const chunks: Buffer[] = [];
    await new Promise<void>((resolve) => {
      stream.on('data', (c: Buffer) => chunks.length < 64 && chunks.push(c));
      stream.on('end', resolve);
      stream.on('close', resolve);
      stream.on('error', () => resolve());
    });
    return { code: (await exec.inspect()).ExitCode ?? 1, output: demux(Buffer.concat(chunks)).toString('utf8') };
  }

  private async report(state: PodState): Promise<void> {
    const started = state.startedAt ? new Date(state.startedAt) : new Date();
    let containerState: k8s.V1ContainerState;
    let phase: string;
    if (state.terminated) {
      containerState = { terminated: { exitCode: state.terminated.exitCode, reason: state.terminated.reason, startedAt: started, finishedAt: new Date(state.terminated.finishedAt) } };
      phase = state.terminated.exitCode === 0 ? 'Succeeded' : 'Failed';
    } else {
      containerState = { running: { startedAt: started } };
      phase = 'Running';
    }
    const status: k8s.V1PodStatus = {
      phase,
      hostIP: '127.0.0.1',
      hostIPs: [{ ip: '127.0.0.1' }],
      ...(state.ip ? { podIP: state.ip, podIPs: [{ ip: state.ip }] } : {}),
      startTime: started,
      conditions: [
        cond('PodScheduled', true),
        cond('Initialized', true),
        cond('ContainersReady', state.ready, state.ready ? undefined : 'ContainersNotReady'),
        cond('Ready', state.ready, state.ready ? undefined : 'ContainersNotReady'),
      ],
      containerStatuses: [
        {
          name: state.containerName,
          image: state.image,
          imageID: '',
          containerID: state.containerId ? `docker://${state.containerId}` : undefined,
          ready: state.ready,
          started: !state.terminated,
          restartCount: state.restarts,
          state: containerState,
        },
      ],
    };
    // report changes only (the transition times would make every report look new)
    const key = JSON.stringify({ phase, ip: state.ip, ready: state.ready, restarts: state.restarts, t: state.terminated?.exitCode });
    if (key === state.lastReported) return;
    await this.patchStatus(state, status);
    state.lastReported = key;
  }

  private async patchStatus(state: PodState, status: k8s.V1PodStatus): Promise<void> {
    try {
      await this.core.patchNamespacedPodStatus({ name: state.name, namespace: state.namespace, body: { status } }, mergePatch());
    } catch (err) {
      if (statusOf(err) !== 404) throw err;
    }
  }

  /**
   * A pod being deleted stops answering for its Services: SIGTERM (the app
   * closes its idle keep-alive connections), then off the network, so Docker's
   * DNS no longer gives its address for the Service names.
   */
  private async leaveServices(state: PodState): Promise<void> {
    const id = state.containerId;
    if (!id) return;
    await this.docker.getContainer(id).kill({ signal: 'SIGTERM' }).catch(() => {});
    await this.docker.getNetwork(this.network).disconnect({ Container: id, Force: true }).catch(() => {});
  }

  /** Graceful deletion: stop the container (SIGTERM, then SIGKILL after the grace period), remove it, finish the delete. */
  private async deletePod(state: PodState, graceS: number): Promise<void> {
    await this.removeContainer(state, Math.min(graceS, STOP_GRACE_S));
    await this.core
      .deleteNamespacedPod({ name: state.name, namespace: state.namespace, gracePeriodSeconds: 0, body: { gracePeriodSeconds: 0, preconditions: { uid: state.uid } } })
      .catch((err) => {
        if (statusOf(err) !== 404 && statusOf(err) !== 409) throw err;
      });
    this.pods.delete(state.uid);
  }

  private async removeContainer(state: PodState, graceS: number): Promise<void> {
    if (!state.containerId) return;
    const c = this.docker.getContainer(state.containerId);
    if (graceS > 0) await c.stop({ t: graceS }).catch(() => {});
    await c.remove({ force: true }).catch(() => {});
    state.containerId = undefined;
    removeDir(state.saDir);
    state.saDir = undefined;
  }

  // ------------------------------------------------------------ logs (kubelet's /containerLogs)

  private async startLogServer(): Promise<number> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-node-agent-'));
    try {
      // the API server does not verify a kubelet's serving certificate unless told to: a throwaway one serves
      execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${dir}/k`, '-out', `${dir}/c`, '-days', '2', '-subj', '/CN=topas-node-agent', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
      const key = fs.readFileSync(`${dir}/k`);
      const cert = fs.readFileSync(`${dir}/c`);
      this.logServer = https.createServer({ key, cert }, (req, res) => void this.serveLogs(req.url ?? '', res));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
    const server = this.logServer;
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return (server.address() as AddressInfo).port;
  }

  private async serveLogs(url: string, res: import('node:http').ServerResponse): Promise<void> {
    const u = new URL(url, 'https://127.0.0.1');
    const m = /^\/containerLogs\/([^/]+)\/([^/]+)\/([^/]+)$/.exec(u.pathname);
    const state = m ? [...this.pods.values()].find((p) => p.namespace === m[1] && p.name === m[2]) : undefined;
    if (!state?.containerId) {
      res.writeHead(404).end('no such container on this node');
      return;
    }
    try {
      const tail = u.searchParams.get('tailLines');
      const buf = (await this.docker.getContainer(state.containerId).logs({ stdout: true, stderr: true, follow: false, ...(tail ? { tail: Number(tail) } : {}) })) as unknown as Buffer;
      res.writeHead(200, { 'content-type': 'text/plain' }).end(demux(buf));
    } catch (err) {
      res.writeHead(500).end((err as Error).message);
    }
  }
}

function removeDir(dir: string | undefined): void {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
}

/** Docker's multiplexed log stream (8-byte frame headers) as plain text. */
function demux(buf: Buffer): Buffer {
  const parts: Buffer[] = [];
  let i = 0;
  while (i + 8 <= buf.length) {
    const len = buf.readUInt32BE(i + 4);
    parts.push(buf.subarray(i + 8, i + 8 + len));
    i += 8 + len;
  }
  return Buffer.concat(parts);
}

function cond(type: string, ok: boolean, reason?: string): k8s.V1PodCondition {
  return { type, status: ok ? 'True' : 'False', lastTransitionTime: new Date(), ...(reason ? { reason } : {}) };
}

function prefixed(data: Record<string, string>, prefix = ''): Record<string, string> {
  return Object.fromEntries(Object.entries(data).map(([k, v]) => [`${prefix}${k}`, v]));
}

function mergePatch(): k8s.ConfigurationOptions {
  return k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch);
}


/** `node dist/plugins/kubernetes/test-support/node-agent.js KUBECONFIG`: runs an agent until SIGINT/SIGTERM. */
if (require.main === module) {
  const kc = new k8s.KubeConfig();
  if (process.argv[2]) kc.loadFromFile(process.argv[2]);
  else kc.loadFromDefault();
  const agent = new NodeAgent({ kubeconfig: kc, log: (l) => process.stderr.write(`node-agent: ${l}\n`) });
  const stop = (): void => void agent.stop().then(() => process.exit(0));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  agent.start().catch((err: Error) => {
    process.stderr.write(`node-agent: ${err.message}\n`);
    void agent.stop().then(() => process.exit(1));
  });
}
