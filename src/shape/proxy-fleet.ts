import type { ShapeController, ShapeTarget } from './shape-controller';
import type { ProxyHostClient } from './proxy-host';
import { ShapingProxy, type ProxyMode, type ProxyTarget, type ShapingProxyStats } from './shaping-proxy';
import { isUnshaped, type ShapeState } from './shape-state';

// how often a run holding a hosted SUT sends the host changed upstream lists: well
// inside the 250 ms a rollout drains a replica before stopping it
const HOST_SYNC_INTERVAL_MS = 100;

/** A dependents' proxy that lives in a proxy host: shapes and stats go through the host's control API. */
class HostedProxy implements ShapeTarget {
  private shape: ShapeState = {};
  constructor(
    private readonly host: ProxyHostClient,
    private readonly service: string,
    private readonly key: string,
    private readonly mode: ProxyMode,
    readonly address: ProxyTarget,
  ) {}

  setShape(state: ShapeState): Promise<void> {
    this.shape = { ...state };
    return this.host.setShape(this.service, state);
  }

  stats(): ShapingProxyStats {
    return { name: `${this.key} (dependents, proxy host)`, mode: this.mode, address: { ...this.address }, shape: { ...this.shape }, activeConnections: 0, totalConnections: 0, resetConnections: 0, heldConnections: 0, upstreamErrors: 0, bytesToServer: 0, bytesToClient: 0, httpRequests: 0, faultedRequests: 0, lostRequests: 0 };
  }

  /** The host's proxies outlive this run: closing the stand-in leaves them be. */
  async close(): Promise<void> {}
}

/** `main` for a service's main port, a port name for a named extra port, `db` for a database. */
export type ProxyPort = string;

export interface ProxyFleetOptions {
  controller: ShapeController;
  /** where scenario-facing proxies listen (scenarios run on this machine) */
  scenarioHost?: string;
  /** where the proxies dependents reach listen (docker: the run network's gateway address) */
  dependentHost?: string;
}

/**
 * The shaping proxies of one SUT, all registered with one ShapeController so a
 * shape set on a service reaches every one of them.
 *
 * Two kinds per service port:
 * - a dependent proxy, which other services' `${name.url}` references point at;
 *   it round-robins new connections over the replicas `targets()` lists, so it
 *   follows scaling and rollouts like a Service VIP would;
 * - one scenario proxy per replica, listed in the endpoint map, so that
 *   scenarios keep choosing a replica themselves and a retiring replica leaves
 *   their rotation before it stops (keep-alive connections never straddle it).
 *
 * Backend-neutral: the kubernetes backend can run the same fleet next to a
 * port-forward or inside a runner pod.
 */
export class ProxyFleet {
  readonly controller: ShapeController;
  private readonly scenarioHost: string;
  private readonly dependentHost: string;
  private readonly dependents = new Map<string, ShapingProxy>();
  private readonly replicas = new Map<string, { service: string; proxies: Map<ProxyPort, ShapingProxy> }>();
  private closed = false;
  // dependents' proxies in a detached host (a kept SUT), with the upstream lists last sent to it
  private host: ProxyHostClient | undefined;
  private readonly hosted = new Map<string, { proxy: HostedProxy; targets: () => ProxyTarget[] }>();
  private sentTargets = '';
  private syncTimer: NodeJS.Timeout | undefined;
  private syncing: Promise<void> | undefined;

  constructor(opts: ProxyFleetOptions) {
    this.controller = opts.controller;
    this.scenarioHost = opts.scenarioHost ?? '127.0.0.1';
    this.dependentHost = opts.dependentHost ?? this.scenarioHost;
  }

  /**
   * Dependents' proxies from now on live in this proxy host (the SUT is kept
   * running): `dependentProxy` creates them there, and while this run holds
   * the SUT it sends the host every change of their upstream replicas.
   */
  useHost(host: ProxyHostClient): void {
    this.host = host;
    this.syncTimer ??= setInterval(() => void this.syncHost(), HOST_SYNC_INTERVAL_MS);
    this.syncTimer.unref();
  }

  /** Sends the host the upstream lists that changed since the last call (also from the timer). */
  syncHost(): Promise<void> {
    const host = this.host;
    if (!host || this.closed) return Promise.resolve();
    const run = async () => {
      const all: Record<string, ProxyTarget[]> = {};
      for (const [key, h] of this.hosted) all[key] = h.targets();
      const text = JSON.stringify(all);
      if (text === this.sentTargets) return;
      await host.setTargets(all);
      this.sentTargets = text;
    };
    // one at a time, in order
    this.syncing = (this.syncing ?? Promise.resolve()).then(run, run).catch(() => undefined);
    return this.syncing;
  }

  /** Start (once) the proxy that dependents of `service` reach on `port`. */
  async dependentProxy(service: string, port: ProxyPort, mode: ProxyMode, targets: () => ProxyTarget[], listenHost = this.dependentHost): Promise<ProxyTarget> {
    const key = `${service}\u0000${port}`;
    const existing = this.dependents.get(key);
    if (existing) return existing.stats().address!;
    if (this.host) {
      const hostKey = `${service}:${port}`;
      const known = this.hosted.get(hostKey);
      if (known) return { ...known.proxy.address };
      const address = await this.host.addProxy(hostKey, service, mode, listenHost);
      const proxy = new HostedProxy(this.host, service, hostKey, mode, address);
      this.hosted.set(hostKey, { proxy, targets });
      this.controller.register(service, proxy);
      await this.syncHost();
      return { ...address };
    }
    const proxy = new ShapingProxy({ name: `${service}:${port} (dependents)`, mode, targets, listenHost });
    const address = await this.startProxy(service, proxy);
    this.dependents.set(key, proxy);
    return address;
  }

  dependentAddress(service: string, port: ProxyPort): ProxyTarget | undefined {
    const hosted = this.hosted.get(`${service}:${port}`);
    if (hosted) return { ...hosted.proxy.address };
    return this.dependents.get(`${service}\u0000${port}`)?.stats().address;
  }

  /** Start (once) the scenario proxy of one replica's port. `replica` is any key unique within the run. */
  async replicaProxy(service: string, replica: string, port: ProxyPort, mode: ProxyMode, target: () => ProxyTarget | undefined): Promise<ProxyTarget> {
    let entry = this.replicas.get(replica);
    if (!entry) {
      entry = { service, proxies: new Map() };
      this.replicas.set(replica, entry);
    }
    const existing = entry.proxies.get(port);
    if (existing) return existing.stats().address!;
    const proxy = new ShapingProxy({
      name: `${service}:${port} (replica ${replica})`,
      mode,
      listenHost: this.scenarioHost,
      targets: () => {
        const t = target();
        return t ? [t] : [];
      },
    });
    const address = await this.startProxy(service, proxy);
    entry.proxies.set(port, proxy);
    return address;
  }

  /**
   * Where scenarios reach a replica's port: its proxy while the service is
   * shaped, else undefined (go direct). Unshaped traffic skips the extra hop, so
   * load tests do not pay for a relay in topas' own process; the endpoint map
   * switches the moment a shape is set (see `watchShaping` in the run).
   */
  replicaAddress(replica: string, port: ProxyPort): ProxyTarget | undefined {
    const entry = this.replicas.get(replica);
    if (!entry || isUnshaped(this.controller.state(entry.service))) return undefined;
    return entry.proxies.get(port)?.stats().address;
  }

  /** The replica is gone: close its scenario proxies (their connections die with it). */
  async dropReplica(replica: string): Promise<void> {
    const entry = this.replicas.get(replica);
    if (!entry) return;
    this.replicas.delete(replica);
    for (const p of entry.proxies.values()) this.controller.unregister(entry.service, p);
    await Promise.all([...entry.proxies.values()].map((p) => p.close()));
  }

  /** Close every proxy; the controller keeps its history. Idempotent. */
  async close(): Promise<void> {
    if (this.syncTimer) clearInterval(this.syncTimer);
    this.syncTimer = undefined;
    // the host keeps the last upstream lists this run knew
    await this.syncHost();
    this.closed = true;
    const all = [...this.dependents.values(), ...[...this.replicas.values()].flatMap((e) => [...e.proxies.values()])];
    this.dependents.clear();
    this.replicas.clear();
    await this.controller.close();
    await Promise.all(all.map((p) => p.close()));
  }

  private async startProxy(service: string, proxy: ShapingProxy): Promise<ProxyTarget> {
    if (this.closed) throw new Error(`shaping proxies of this run are closed (service ${service})`);
    const address = await proxy.start();
    if (this.closed) {
      await proxy.close();
      throw new Error(`shaping proxies of this run are closed (service ${service})`);
    }
    this.controller.register(service, proxy);
    return address;
  }
}

/** `http://host:port` for an address (IPv6 in brackets). */
export function proxyUrl(a: ProxyTarget, scheme = 'http'): string {
  return `${scheme}://${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}`;
}
