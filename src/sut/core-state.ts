import type { ProxyHostInfo } from '../shape/proxy-host';
import type { SavedReplicas } from './driver';
import type { ReplicaTable } from './replica-table';

/** What the core keeps in `SutState.data`, beside the driver's own fields. */
export interface CoreStateData {
  services: Record<string, SavedService>;
  databases?: Record<string, { stopped: boolean }>;
  /** the detached host of the dependents' proxies (a SUT kept by `topas up` / --keep) */
  proxyHost?: ProxyHostInfo;
  /** where the dependents' proxies listen (docker: the network's gateway; '' for the fleet's default) */
  gateway?: string;
  [driverField: string]: unknown;
}

interface SavedService {
  declared: number;
  lastDeclared?: number;
  version?: string;
  image?: string;
  env?: Record<string, string>;
  /** written by the docker backend before the core: env over the spec's, and a stop flag */
  envOverrides?: Record<string, string>;
  stopped?: boolean;
  /** each replica: its slot, whether it was being stopped, and the driver's fields */
  replicas?: Array<{ index: number; retiring?: boolean; [driverField: string]: unknown }>;
}

export function stateData(table: ReplicaTable, driver: Record<string, unknown>, proxyHost: ProxyHostInfo | undefined, gateway: string | undefined): CoreStateData {
  const services: CoreStateData['services'] = {};
  for (const svc of table.services.values()) {
    const c = svc.config;
    services[c.name] = {
      declared: svc.declared,
      lastDeclared: svc.lastDeclared,
      version: c.version,
      image: c.image,
      env: { ...c.env },
      // retiring ones too (flagged): an attach after a crash finishes stopping them
      replicas: svc.replicas
        .filter((r) => !r.gone)
        .sort((a, b) => a.h.index - b.h.index)
        .map((r) => ({ ...(r.h.saved ?? {}), index: r.h.index, ...(r.retiring ? { retiring: true } : {}) })),
    };
  }
  const databases: Record<string, { stopped: boolean }> = {};
  for (const db of table.databases.values()) databases[db.spec.name] = { stopped: db.stopped };
  return { ...driver, services, databases, proxyHost, ...(gateway !== undefined ? { gateway } : {}) };
}

/** Back into the table: what each service was declared as and with what config; the replicas for the driver to adopt. */
export function restoreServices(table: ReplicaTable, data: CoreStateData): SavedReplicas {
  const saved: SavedReplicas = {};
  for (const [name, s] of Object.entries(data.services ?? {})) {
    const svc = table.services.get(name);
    if (!svc) continue;
    svc.declared = s.stopped ? 0 : s.declared;
    svc.lastDeclared = s.lastDeclared ?? Math.max(s.declared, 1);
    svc.config.version = s.version;
    if (s.image !== undefined) svc.config.image = s.image;
    svc.config.env = s.env ? { ...s.env } : { ...svc.config.env, ...(s.envOverrides ?? {}) };
    saved[name] = (s.replicas ?? []).map(({ index, retiring, ...rest }) => ({ index, retiring, saved: rest }));
  }
  for (const [name, d] of Object.entries(data.databases ?? {})) {
    const db = table.databases.get(name);
    if (db) db.stopped = d.stopped;
  }
  return saved;
}
