import type { EndpointMap } from '../backends/backend';

/** Where requests go: the ready replicas, or, while none is ready, the ones that run (a request then fails as the SUT would). */
export function servingPool<R>(ready: R[], live: R[]): R[] {
  return ready.length ? ready : live;
}

/** Round robin over a pool that changes between calls (rollouts, scale): one counter per service. */
export class RoundRobin {
  private next = 0;
  pick<R>(pool: R[]): R | undefined {
    if (pool.length === 0) return undefined;
    return pool[this.next++ % pool.length];
  }
}

export interface DbCredentials {
  user: string;
  password: string;
  dbname: string;
}

/** `postgres://user:password@host:port/dbname`, every part that may hold anything encoded. */
export function postgresUrl(c: DbCredentials, host: string, port: number | string): string {
  return `postgres://${encodeURIComponent(c.user)}:${encodeURIComponent(c.password)}@${host}:${port}/${encodeURIComponent(c.dbname)}`;
}

/** A service's entry in the endpoint map: one URL (and one address per named port) per replica in `pool`. */
export function serviceEntry<R>(pool: R[], ports: string[], url: (r: R) => string, port: (r: R, name: string) => string, tlsPorts?: string[]): EndpointMap[string] {
  const extra: Record<string, string[]> = {};
  for (const name of ports) extra[name] = pool.map((r) => port(r, name));
  return { kind: 'service', urls: pool.map(url), extra, ...(tlsPorts ? { tlsPorts } : {}) };
}

/** A database's entry in the endpoint map, as scenarios reach it; no URL while it is not running. */
export function databaseEntry(info: DbCredentials & { host: string; port: number }, running = true): EndpointMap[string] {
  return { kind: 'database', urls: running ? [postgresUrl(info, info.host, info.port)] : [], extra: {}, db: { host: info.host, port: info.port, user: info.user, password: info.password, dbname: info.dbname } };
}
