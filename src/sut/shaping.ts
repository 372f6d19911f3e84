import type { ProxyFleet } from '../shape/proxy-fleet';
import type { ProxyTarget } from '../shape/shaping-proxy';

/**
 * Shaping-proxy wiring, the same on every backend: each replica gets scenario
 * proxies (main port in HTTP mode for http_fault unless it serves TLS, named ports plain TCP); each
 * database one; when dependents are shaped, each service and database also
 * gets the proxy its `${name.*}` references resolve to, forwarding to the
 * replicas in rotation. A driver only says where a port of a replica is on
 * this host.
 */
export interface ShapedService {
  name: string;
  /** named extra ports (`ports:` in topas.yaml) */
  ports: Record<string, number>;
  /** the main port serves TLS: its proxies pass bytes (an HTTP-mode proxy cannot read TLS) */
  tls?: boolean;
}

/** `port` is 'main' or a named port. */
export type ReplicaTarget = (port: string) => ProxyTarget | undefined;

export async function startReplicaProxies(fleet: ProxyFleet, svc: ShapedService, key: string, target: ReplicaTarget): Promise<void> {
  await fleet.replicaProxy(svc.name, key, 'main', svc.tls ? 'tcp' : 'http', () => target('main'));
  for (const pn of Object.keys(svc.ports)) await fleet.replicaProxy(svc.name, key, pn, 'tcp', () => target(pn));
}

/** The key of a database's scenario proxy in the fleet. */
export function databaseProxyKey(name: string): string {
  return `${name}#db`;
}

export async function startDatabaseProxy(fleet: ProxyFleet, name: string, target: () => ProxyTarget | undefined): Promise<void> {
  await fleet.replicaProxy(name, databaseProxyKey(name), 'db', 'tcp', target);
}

/**
 * The dependents' proxies: for each database and each port of each service, one
 * proxy over what is in rotation now (`targets`), listening on `listenHost`
 * (default: the fleet's) where the SUT's own processes or containers reach it.
 */
export async function startDependentProxies(
  fleet: ProxyFleet,
  opts: {
    databases: string[];
    databaseTarget: (name: string) => ProxyTarget | undefined;
    services: ShapedService[];
    serviceTargets: (name: string, port: string) => ProxyTarget[];
    listenHost?: string;
  },
): Promise<void> {
  for (const db of opts.databases) {
    await fleet.dependentProxy(db, 'db', 'tcp', () => [opts.databaseTarget(db)].filter((t): t is ProxyTarget => !!t), opts.listenHost);
  }
  for (const svc of opts.services) {
    await fleet.dependentProxy(svc.name, 'main', svc.tls ? 'tcp' : 'http', () => opts.serviceTargets(svc.name, 'main'), opts.listenHost);
    for (const pn of Object.keys(svc.ports)) await fleet.dependentProxy(svc.name, pn, 'tcp', () => opts.serviceTargets(svc.name, pn), opts.listenHost);
  }
}
