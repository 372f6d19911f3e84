import type { EndpointMap, ServiceStatus } from '../backends/backend';
import type { CoreShaping } from './core-shaping';
import type { SutDriver } from './driver';
import { databaseEntry, postgresUrl, serviceEntry } from './endpoints';
import type { ReplicaTable } from './replica-table';
import { sutErrors } from './sut-errors';

/** What `ps` and `sut.services()` show: direct addresses (not the scenario proxies), the versions that run. */
export async function serviceStatuses(table: ReplicaTable, driver: SutDriver): Promise<ServiceStatus[]> {
  const out: ServiceStatus[] = [];
  for (const svc of table.services.values()) {
    const live = table.live(svc);
    const extra: Record<string, string[]> = {};
    for (const pn of Object.keys(svc.config.ports)) extra[pn] = live.map((r) => addressText(r.h.host.ports[pn]));
    // the versions that run (two during a rollout), else the declared one
    const versions = [...new Set(live.map((r) => r.h.version).filter((v): v is string => v !== undefined))];
    const current = live.find((r) => !table.stale(svc, r)) ?? live[0];
    out.push({
      name: svc.config.name,
      kind: 'service',
      replicas: live.length,
      ready: table.isReady(svc),
      version: versions.length ? versions.join(', ') : svc.config.version,
      image: current?.h.image ?? svc.config.image,
      endpoints: live.map((r) => `${svc.config.tls ? 'https' : 'http'}://${addressText(r.h.host.main)}`),
      ...(Object.keys(extra).length ? { extraEndpoints: extra } : {}),
    });
  }
  for (const db of table.databases.values()) {
    const up = db.handle !== undefined && !db.stopped && !(await driver.databaseGone(db.spec.name));
    const h = db.handle;
    out.push({
      name: db.spec.name,
      kind: 'database',
      replicas: up ? 1 : 0,
      ready: up && db.ready,
      image: h?.image ?? db.spec.image,
      ...(h?.version ? { version: h.version } : {}),
      endpoints: up && h ? [postgresUrl(db.spec.credentials, h.host.host, h.host.port)] : [],
    });
  }
  return out;
}

/** A base URL for scenarios (round robin over the pool), a named port as host:port, a database URL. */
export function endpointOf(table: ReplicaTable, shaping: CoreShaping, name: string, port?: string): string {
  const db = table.databases.get(name);
  if (db) {
    const a = shaping.databaseScenarioAddress(db);
    if (!a) throw sutErrors.databaseNotRunning(name);
    return postgresUrl(db.spec.credentials, a.host, a.port);
  }
  const svc = table.service(name);
  if (port !== undefined && svc.config.ports[port] === undefined) throw sutErrors.unknownPort(name, port, Object.keys(svc.config.ports));
  const r = svc.rr.pick(table.pool(svc));
  if (!r) throw sutErrors.noRunningReplica(name);
  if (port === undefined) return shaping.replicaUrl(svc.config, r.h);
  const a = shaping.replicaPort(r.h, port);
  return svc.config.tlsPorts?.includes(port) ? `https://${a}` : a;
}

export function endpointMapOf(table: ReplicaTable, shaping: CoreShaping): EndpointMap {
  const map: EndpointMap = {};
  for (const svc of table.services.values()) {
    const c = svc.config;
    map[c.name] = serviceEntry(table.pool(svc), Object.keys(c.ports), (r) => shaping.replicaUrl(c, r.h), (r, pn) => shaping.replicaPort(r.h, pn), c.tlsPorts);
  }
  for (const db of table.databases.values()) {
    const a = shaping.databaseScenarioAddress(db);
    map[db.spec.name] = databaseEntry({ ...db.spec.credentials, host: a?.host ?? '127.0.0.1', port: a?.port ?? 0 }, a !== undefined && !db.stopped);
  }
  return map;
}

function addressText(a: { host: string; port: number } | undefined): string {
  return a ? `${a.host}:${a.port}` : '';
}
