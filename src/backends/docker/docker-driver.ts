import * as fs from 'node:fs';
import type { AppSpec, ServiceSpec } from '../../spec/app-spec';
import { TopasError } from '../../errors';
import type { StartContext } from '../backend';
import { sleep, waitForHttp } from '../readiness';
import { replicaStartFailure } from '../start-errors';
import { sutErrors } from '../../sut/sut-errors';
import type { Adopted, DatabaseHandle, DriverHost, ExecResult, ExecTarget, Fault, ReplicaHandle, ReplicaRequest, RunSnapshot, SutDriver } from '../../sut/driver';
import type { Address } from '../../sut/references';
import { ExitWatch, createContainer, exitOf, inspectHostPorts, runContainer, startCreated, startFailed, waitStrategyFor, type ContainerRequest, type CreatedContainer } from './container-runner';
import { containerLogs, ensureImage, imageRef, versionOf, type Engine } from './engine';
import { LABEL, clearDetached, dockerName, markDetached, proxyHostDir, removeProxyHostDir, runLabels } from './labels';
import { DockerDatabases } from './docker-databases';
import { removeRun } from './remove-run';

const STOP_GRACE_S = 10;
/** a container just started: its app is asked again soon (an answer on the published port costs little) */
const FIRST_PROBE_INTERVAL_MS = 20;
/** how old the list of running containers may be when the heal loop asks */
const RUNNING_TTL_MS = 200;

/** The docker driver's field of `SutState.data` (the core adds services, databases, proxyHost, gateway). */
export interface DockerSutData {
  network: string;
}

/**
 * The docker driver: every replica and database is a container on a network
 * made for the run, under its name as network alias; this host reaches them on
 * ports published on 127.0.0.1.
 */
export class DockerDriver implements SutDriver {
  readonly name = 'docker';
  readonly capabilities = { faults: ['kill', 'stop', 'pause'] as Fault['kind'][], healDatabases: true };
  readonly tuning = { drainMs: 250, reconcileIntervalMs: 500 };
  private host!: DriverHost;
  private readonly prefix: string;
  private counter = 0;
  private closed = false;
  private proxyHost?: { pid: number; startTicks?: number };
  private running?: { at: number; ids: Set<string> };
  /** when each container was known to run: a list asked for before that may not show it running */
  private readonly born = new Map<string, number>();
  readonly dbs: DockerDatabases;
  /** containers prepareReplica made (or is making), by `service#slot`, with what they were made from */
  private readonly prepared = new Map<string, Promise<{ c: CreatedContainer; fingerprint: string } | undefined>>();

  constructor(
    private readonly spec: AppSpec,
    private readonly ctx: StartContext,
    private readonly engine: Engine,
    readonly network: string,
  ) {
    this.prefix = dockerName('topas', spec.name, ctx.runId);
    this.dbs = new DockerDatabases(spec, {
      docker: engine.docker,
      network,
      name: (db) => dockerName(this.prefix, db, String(++this.counter)),
      labels: (db, ref) => this.labels(db, 'database', 1, ref),
      closed: () => this.closed || this.host.closed,
      remove: (id) => this.remove(id),
      log: (line) => ctx.log(line),
      runId: ctx.runId,
    }, ctx.processEnv);
  }

  private get docker(): Engine['docker'] {
    return this.engine.docker;
  }

  bind(host: DriverHost): void {
    this.host = host;
  }

  private refOf(svc: ServiceSpec): string {
    if (!svc.image) throw new TopasError('INVALID_APP_SPEC', `service ${svc.name} has no image; the docker backend needs one`);
    return imageRef(svc.image, svc.version);
  }

  private labels(service: string, kind: 'service' | 'database', slot: number, ref: string): Record<string, string> {
    return {
      ...runLabels(this.spec.name, this.ctx.runId, this.spec.file, this.proxyHost),
      [LABEL.service]: service,
      [LABEL.kind]: kind,
      [LABEL.replica]: String(slot),
      [LABEL.image]: ref,
    };
  }

  /** Every image checked (and pulled when missing) before anything is made; then the run's network. */
  async prepare(opts: { signal: AbortSignal; shapeDependents: boolean }): Promise<{ dependents: boolean; listenHost?: string }> {
    const refs = new Set([...this.spec.services.map((s) => this.refOf(s)), ...this.dbs.refs()]);
    await Promise.all([...refs].map((ref) => ensureImage(this.docker, ref, this.ctx.log)));
    if (opts.signal.aborted) throw new TopasError('INTERRUPTED', 'start interrupted');
    await this.docker.createNetwork({ Name: this.network, Driver: 'bridge', CheckDuplicate: true, Labels: { ...runLabels(this.spec.name, this.ctx.runId, this.spec.file), [LABEL.service]: '' } });
    if (!opts.shapeDependents) return { dependents: false };
    // the host's address on the run's bridge network: containers reach this process's shaping proxies there
    const info = (await this.docker.getNetwork(this.network).inspect()) as { IPAM?: { Config?: Array<{ Gateway?: string }> } };
    const gateway = info.IPAM?.Config?.find((c) => c.Gateway)?.Gateway;
    if (!gateway) this.host.log(`network ${this.network} reports no gateway; service-to-service traffic is not shaped`);
    return { dependents: gateway !== undefined, listenHost: gateway };
  }

  private handle(svc: ServiceSpec, slot: number, id: string, ref: string, hostPorts: Map<number, number>): ReplicaHandle {
    const at = (p: number | undefined): Address | undefined => (p ? { host: '127.0.0.1', port: p } : undefined);
    const ports = Object.fromEntries(Object.entries(svc.ports).map(([n, p]) => [n, at(hostPorts.get(p))]));
    const inside = { main: { host: `${svc.name}-${slot}`, port: svc.port }, ports: Object.fromEntries(Object.entries(svc.ports).map(([n, p]) => [n, { host: `${svc.name}-${slot}`, port: p }])) };
    return { key: id, service: svc.name, index: slot, version: versionOf(ref), image: ref, revision: ref, host: { main: at(hostPorts.get(svc.port)), ports }, inside, saved: { probePort: hostPorts.get(svc.ready.kind === 'http' ? (svc.ready.port ?? svc.port) : svc.port) } };
  }

  /** The container of one replica as it would be made now (env resolved now, the run's labels now). */
  private request(s: ServiceSpec, slot: number, onCreated: (id: string) => void): ContainerRequest {
    const ref = this.refOf(s);
    const ready = s.ready;
    return {
      name: dockerName(this.prefix, s.name, String(slot), String(++this.counter)),
      image: ref,
      env: this.env(s),
      labels: this.labels(s.name, 'service', slot, ref),
      network: this.network,
      // the service name round-robins across replicas in the network's DNS; name-N is one replica
      aliases: [s.name, `${s.name}-${slot}`],
      ports: [...new Set([s.port, ...Object.values(s.ports), ...('port' in ready && ready.port ? [ready.port] : [])])],
      wait: waitStrategyFor(ready),
      startupTimeoutMs: ready.timeoutMs,
      onCreated: (id) => {
        onCreated(id);
        if (this.closed || this.host.closed) void this.remove(id);
      },
    };
  }

  /** Create (not start) a replica's container while its dependencies become ready; startReplica starts it. */
  prepareReplica(req: { service: ServiceSpec; index: number; signal: AbortSignal }): void {
    const key = `${req.service.name}#${req.index}`;
    if (this.prepared.has(key) || this.closed) return;
    let r: ContainerRequest;
    try {
      r = this.request(req.service, req.index, () => {});
    } catch {
      return;
    }
    // tcp and log readiness are checked by testcontainers as it starts the container
    if (r.wait) return;
    const made = createContainer(this.docker, r).then(
      (c) => ({ c, fingerprint: fingerprint(r) }),
      () => undefined,
    );
    this.prepared.set(key, made);
  }

  /** The container prepareReplica made for this slot, if it was made for this very request; else it is removed. */
  private async takePrepared(s: ServiceSpec, slot: number, r: ContainerRequest): Promise<CreatedContainer | undefined> {
    const key = `${s.name}#${slot}`;
    const made = this.prepared.get(key);
    if (!made) return undefined;
    this.prepared.delete(key);
    const p = await made;
    if (!p) return undefined;
    if (p.fingerprint === fingerprint(r) && !this.closed) return p.c;
    await this.remove(p.c.id);
    return undefined;
  }

  async startReplica(req: ReplicaRequest): Promise<ReplicaHandle> {
    const s = req.service;
    let createdId: string | undefined;
    try {
      const r = this.request(s, req.index, (id) => (createdId = id));
      const pre = await this.takePrepared(s, req.index, r);
      if (pre) createdId = pre.id;
      const started = pre ? await startCreated(this.docker, pre, r.ports) : await runContainer(r, this.docker);
      const h = this.handle(s, req.index, started.id, r.image, started.hostPorts);
      // from now on it runs: a list asked for earlier may have seen it only created
      this.born.set(h.key, Date.now());
      req.created(h);
      return h;
    } catch (err) {
      throw await this.failure(s, req.index, startFailed(`service ${s.name} replica ${req.index}`, err, s.ready.timeoutMs), createdId);
    }
  }

  /** The cause, the container's last log lines, what to check in topas.yaml; the container removed. */
  private async failure(s: ServiceSpec, slot: number, err: unknown, id: string | undefined): Promise<unknown> {
    if (!id) return err;
    const [logs, exited] = await Promise.all([containerLogs(this.docker, id, 100), exitOf(this.docker, id)]);
    await this.remove(id);
    return replicaStartFailure(err, { spec: this.spec, service: s, replica: slot, backend: 'docker', exited, logs });
  }

  private env(s: ServiceSpec): Record<string, string> {
    const env: Record<string, string> = { PORT: String(s.port) };
    for (const [n, p] of Object.entries(s.ports)) env[`PORT_${n.toUpperCase().replace(/[^A-Z0-9]/g, '_')}`] = String(p);
    env.TOPAS_VERSION = s.version ?? versionOf(this.refOf(s));
    // --env over the service's env (as apply_service left it), as on every backend
    for (const [k, v] of Object.entries({ ...s.env, ...(this.ctx.env ?? {}) })) env[k] = this.host.resolve(v);
    return env;
  }

  /** tcp and log readiness are testcontainers' wait strategies at start; http is probed here (once: one attempt). */
  async waitReplicaReady(h: ReplicaHandle, svc: ServiceSpec, opts: { signal: AbortSignal; onceMs?: number }): Promise<void> {
    const ready = svc.ready;
    if (ready.kind !== 'http') return;
    const label = `service ${svc.name} replica ${h.index}`;
    const port = h.saved?.probePort as number | undefined;
    const url = `${probeScheme(svc, ready.port ?? svc.port)}://127.0.0.1:${port}`;
    if (opts.onceMs !== undefined) {
      if (!port) throw new TopasError('SUT_NOT_UP', `${label}: port not published`);
      await waitForHttp(url, { path: ready.path, timeoutMs: 1, attemptTimeoutMs: opts.onceMs, label });
      return;
    }
    const watch = new ExitWatch(this.docker, h.key);
    try {
      await waitForHttp(url, { path: ready.path, timeoutMs: ready.timeoutMs, signal: opts.signal, label, liveness: watch.liveness, firstIntervalMs: FIRST_PROBE_INTERVAL_MS });
    } catch (err) {
      const [logs, exited] = await Promise.all([containerLogs(this.docker, h.key, 100), exitOf(this.docker, h.key)]);
      throw replicaStartFailure(startFailed(label, err, ready.timeoutMs), { spec: this.spec, service: svc, replica: h.index, backend: 'docker', exited, logs });
    } finally {
      watch.stop();
    }
  }

  async removeReplica(h: ReplicaHandle, opts: { graceful: boolean }): Promise<void> {
    if (opts.graceful) await this.docker.getContainer(h.key).stop({ t: STOP_GRACE_S }).catch(() => {});
    await this.remove(h.key);
    this.born.delete(h.key);
  }

  private async remove(id: string): Promise<void> {
    await this.docker.getContainer(id).remove({ force: true, v: true }).catch(() => {});
  }

  /** One list of the run's running containers serves every check for a moment (if asked for after `since`). */
  private async runningIds(since = 0): Promise<Set<string>> {
    if (this.running && this.running.at > since && Date.now() - this.running.at < RUNNING_TTL_MS) return this.running.ids;
    const at = Date.now();
    const list = await this.docker.listContainers({ all: true, filters: { label: [`${LABEL.run}=${this.ctx.runId}`] } });
    const ids = new Set(list.filter((c) => c.State === 'running').map((c) => c.Id));
    if (!this.running || this.running.at < at) this.running = { at, ids };
    return ids;
  }

  async isGone(h: ReplicaHandle): Promise<boolean> {
    return !(await this.runningIds(this.born.get(h.key))).has(h.key);
  }

  async fault(h: ReplicaHandle, fault: Fault): Promise<'gone' | 'alive'> {
    return this.faultContainer(h.key, fault);
  }

  private async faultContainer(id: string, fault: Fault): Promise<'gone' | 'alive'> {
    const c = this.docker.getContainer(id);
    if (fault.kind === 'pause') {
      await c.pause();
      return 'alive';
    }
    if (fault.kind === 'stop') await c.stop({ t: STOP_GRACE_S });
    else await c.kill({ signal: fault.signal });
    this.running = undefined;
    const deadline = Date.now() + 2000;
    while (Date.now() < deadline) {
      const st = await inspectHostPorts(this.docker, id).catch(() => undefined);
      if (!st?.running) return 'gone';
      await sleep(25);
    }
    return 'alive';
  }

  replicaLogs(h: ReplicaHandle, tail: number): Promise<string> {
    return containerLogs(this.docker, h.key, tail);
  }

  async exec(target: ExecTarget, argv: string[]): Promise<ExecResult> {
    const id = target.kind === 'database' ? this.dbs.get(target.database.name).id : target.replica?.key;
    if (!id) throw sutErrors.nothingToExec(target.kind === 'database' ? target.database.name : target.service.name);
    const r = await (await this.engine.client()).container.exec(this.docker.getContainer(id), argv);
    return { code: r.exitCode, stdout: r.stdout, stderr: r.stderr };
  }

  async prepareConfig(svc: ServiceSpec): Promise<void> {
    await ensureImage(this.docker, this.refOf(svc), this.ctx.log);
  }

  // ---- databases

  async startDatabase(db: { name: string }, opts: { signal: AbortSignal }): Promise<DatabaseHandle> {
    const h = await this.dbs.start(db.name, opts.signal);
    this.born.set(this.dbs.get(db.name).id!, Date.now());
    return h;
  }

  async databaseGone(name: string): Promise<boolean> {
    const id = this.dbs.get(name).id;
    return !id || !(await this.runningIds(this.born.get(id))).has(id);
  }

  async databaseLogs(name: string, tail: number): Promise<string> {
    const id = this.dbs.get(name).id;
    return id ? containerLogs(this.docker, id, tail) : '';
  }

  stopDatabase(name: string): Promise<void> {
    this.running = undefined;
    return this.dbs.stop(name);
  }

  async restartDatabase(name: string, opts: { graceful: boolean; signal: AbortSignal }): Promise<DatabaseHandle> {
    const h = await this.dbs.restart(name, opts.graceful, opts.signal);
    this.born.set(this.dbs.get(name).id!, Date.now());
    return h;
  }

  async faultDatabase(name: string, fault: Fault): Promise<'gone' | 'alive'> {
    const id = this.dbs.get(name).id;
    if (!id) throw sutErrors.databaseNotRunning(name);
    return this.faultContainer(id, fault);
  }

  /** Containers reach a service (any replica) and a database by network alias and declared port. */
  aliasInside(name: string, port: string): Address | undefined {
    const d = this.spec.databases.find((x) => x.name === name);
    if (d) return { host: d.name, port: d.port };
    const s = this.spec.services.find((x) => x.name === name);
    const p = s && (port === 'main' ? s.port : s.ports[port]);
    return p === undefined ? undefined : { host: name, port: p };
  }

  // ---- attach, state, end

  /** What runs is the truth, whatever the state file says: the containers labelled with this run. */
  async adopt(): Promise<Adopted> {
    const out: Adopted = { replicas: [], databases: [] };
    const list = await this.docker.listContainers({ all: true, filters: { label: [`${LABEL.run}=${this.ctx.runId}`] } });
    for (const info of list) {
      const l = info.Labels ?? {};
      const { hostPorts } = await inspectHostPorts(this.docker, info.Id);
      const n = /-(\d+)$/.exec(info.Names?.[0] ?? '');
      if (n) this.counter = Math.max(this.counter, Number(n[1]));
      if (l[LABEL.kind] === 'database') {
        const h = this.dbs.adopt(l[LABEL.service], info.Id, hostPorts);
        if (h) out.databases.push(h);
        continue;
      }
      const svc = this.spec.services.find((s) => s.name === l[LABEL.service]);
      if (!svc) continue;
      const slot = Number(l[LABEL.replica]) || out.replicas.filter((r) => r.replica.service === svc.name).length + 1;
      out.replicas.push({ replica: this.handle(svc, slot, info.Id, l[LABEL.image] ?? info.Image, hostPorts), alive: info.State === 'running' });
    }
    return out;
  }

  state(): Record<string, unknown> {
    return { network: this.network } satisfies DockerSutData;
  }

  /** Containers started from now on carry the proxy host in their labels (sweeps end it with them). */
  record(s: RunSnapshot): void {
    this.proxyHost = s.proxyHost;
  }

  proxyHostDir(): string {
    const dir = proxyHostDir(this.ctx.runId);
    fs.mkdirSync(dir, { recursive: true });
    return dir;
  }

  abort(): void {
    this.closed = true;
    void removeRun(this.engine, this.ctx.runId).catch(() => {});
  }

  async detach(): Promise<void> {
    await this.dbs.settleTemplates(false);
    await markDetached(this.docker, this.spec.name, this.ctx.runId, this.spec.file);
  }

  /** Every container and the network of this run (by label, so also what a crash left). Idempotent. */
  async dispose(): Promise<void> {
    // interrupted (Ctrl-C): a template still being made is let go at once
    const interrupted = this.closed || Boolean(this.ctx.signal?.aborted);
    this.closed = true;
    await this.dbs.settleTemplates(interrupted);
    await removeRun(this.engine, this.ctx.runId);
    removeProxyHostDir(this.ctx.runId);
    await clearDetached(this.docker, this.ctx.runId).catch((err: Error) => this.ctx.log(`docker: kept marker of run ${this.ctx.runId} not removed: ${err.message}`));
    this.ctx.log(`docker: removed the containers and network of run ${this.ctx.runId}`);
  }
}

/** What a container is made from, but its name: a prepared one serves a start only when this matches. */
function fingerprint(r: ContainerRequest): string {
  return JSON.stringify([r.image, r.env, r.labels, r.aliases, r.ports, r.cmd ?? null]);
}

/** https for a readiness port marked TLS (`tls: true`, or `{ port, tls: true }`), else http */
function probeScheme(s: ServiceSpec, port: number): 'http' | 'https' {
  if (port === s.port) return s.tls ? 'https' : 'http';
  const named = Object.entries(s.ports).find(([, p]) => p === port);
  return named && s.tlsPorts?.includes(named[0]) ? 'https' : 'http';
}
