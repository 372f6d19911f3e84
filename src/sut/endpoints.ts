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
