import type { ServiceSpec } from '../spec/app-spec';
import { proxyUrl, type ProxyFleet } from '../shape/proxy-fleet';
import type { ProxyTarget } from '../shape/shaping-proxy';
import type { ReplicaHandle, SutDriver } from './driver';
import type { Address, AddressView } from './references';
import type { DatabaseRuntime, ReplicaTable } from './replica-table';
import { databaseProxyKey, startDatabaseProxy, startDependentProxies, startReplicaProxies } from './shaping';

/**
 * The core's side of traffic shaping: scenarios reach every replica and
 * database through their proxies; when dependents are shaped, the SUT's own
 * references resolve to the dependents' proxies, which forward to what is in
 * rotation now.
 */
export class CoreShaping {
  private dependents = false;

  constructor(
    private readonly table: ReplicaTable,
    private readonly fleet: ProxyFleet,
    private readonly driver: SutDriver,
  ) {}

  /** Before anything starts: a proxy per database and, with `dependents`, the dependents' proxies (listening on `listenHost`). */
  async start(listenHost: string | undefined, dependents: boolean): Promise<void> {
    for (const db of this.table.databases.values()) await startDatabaseProxy(this.fleet, db.spec.name, () => this.databaseTarget(db));
    if (!dependents) return;
    this.dependents = true;
    await startDependentProxies(this.fleet, {
      databases: [...this.table.databases.keys()],
      databaseTarget: (name) => this.databaseTarget(this.table.databases.get(name)!),
      services: [...this.table.services.values()].map((s) => s.config),
      serviceTargets: (name, port) => this.table.pool(this.table.service(name)).flatMap((r) => target(port === 'main' ? r.h.host.main : r.h.host.ports[port])),
      listenHost,
    });
  }

  private databaseTarget(db: DatabaseRuntime): ProxyTarget | undefined {
    return db.handle && !db.stopped ? { host: db.handle.host.host, port: db.handle.host.port } : undefined;
  }

  /** The scenario proxies of one replica. */
  async addReplica(svc: ServiceSpec, h: ReplicaHandle): Promise<void> {
    await startReplicaProxies(this.fleet, svc, h.key, (port) => target(port === 'main' ? h.host.main : h.host.ports[port])[0]);
  }

  /** A replica's base URL as scenarios reach it: through its proxy (direct when it has none). */
  replicaUrl(svc: ServiceSpec, h: ReplicaHandle): string {
    const a = this.fleet.replicaAddress(h.key, 'main') ?? h.host.main;
    return a ? proxyUrl(a, svc.tls ? 'https' : 'http') : '';
  }

  replicaPort(h: ReplicaHandle, name: string): string {
    const a = this.fleet.replicaAddress(h.key, name) ?? h.host.ports[name];
    return a ? `${a.host}:${a.port}` : '';
  }

  /** A database as scenarios reach it (its proxy); undefined until it has run. */
  databaseScenarioAddress(db: DatabaseRuntime): Address | undefined {
    if (!db.handle) return undefined;
    return this.fleet.replicaAddress(databaseProxyKey(db.spec.name), 'db') ?? db.handle.host;
  }

  /** Addresses as the SUT's own services see them: the dependents' proxy when shaped, else the driver's inside view. */
  insideView(): AddressView {
    return {
      service: (name, port) => {
        const via = this.dependents ? this.fleet.dependentAddress(name, port) : undefined;
        if (via) return via;
        const alias = this.driver.aliasInside?.(name, port);
        if (alias) return alias;
        const r = this.table.pool(this.table.service(name))[0];
        return r && (port === 'main' ? r.h.inside.main : r.h.inside.ports[port]);
      },
      database: (name) => {
        const via = this.dependents ? this.fleet.dependentAddress(name, 'db') : undefined;
        return via ?? this.table.databases.get(name)?.handle?.inside ?? this.driver.aliasInside?.(name, 'db');
      },
    };
  }
}

function target(a: Address | undefined): ProxyTarget[] {
  return a ? [{ host: a.host, port: a.port }] : [];
}
