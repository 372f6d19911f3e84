import * as fs from 'node:fs';
import * as path from 'node:path';
import type { AppSpec } from '../../spec/app-spec';
import type { DbCredentials } from '../../sut/endpoints';
import { PostgresCluster, postgresBaseDir } from './postgres-cluster';

const HOST = '127.0.0.1';

/** Every database of a spec in one embedded PostgreSQL on this machine. */
export interface RunPostgres {
  readonly host: string;
  readonly port: number;
  /** a database's address and credentials; throws for a name the spec has no database for */
  database(name: string): DbCredentials & { host: string; port: number };
  alive(): boolean;
  /** the server's last log lines */
  logs(tail?: number): string;
  /** stops the server and removes its files; idempotent */
  dispose(): Promise<void>;
}

/**
 * The local backend's embedded PostgreSQL for a backend that runs things on
 * this machine (a plugin, through the public API): one cluster under
 * `workDir`, every database of `spec` created with its user, password and
 * initSQL. A failed start leaves nothing running.
 */
export async function startPostgres(spec: AppSpec, opts: { workDir: string; runId: string; signal?: AbortSignal; /** StartContext.processEnv: initdb and postgres get its PATH */ env?: NodeJS.ProcessEnv }): Promise<RunPostgres> {
  // as root, postgres runs as its own user: its files go where it can reach them
  const { dir, outside } = postgresBaseDir(path.join(opts.workDir, 'postgres'), opts.workDir, opts.runId);
  const timeoutMs = Math.max(30_000, ...spec.databases.map((d) => d.ready.timeoutMs));
  let cluster: PostgresCluster | undefined;
  const dispose = async () => {
    await cluster?.stop().catch(() => undefined);
    cluster = undefined;
    fs.rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
  };
  try {
    cluster = await PostgresCluster.start(dir, { ownedRoot: outside ? dir : opts.workDir, timeoutMs, signal: opts.signal, env: opts.env });
    for (const db of spec.databases) await cluster.createDatabase(db, spec);
  } catch (err) {
    await dispose();
    throw err;
  }
  const port = cluster.state.port;
  const started = cluster;
  return {
    host: HOST,
    port,
    database(name) {
      const db = spec.databases.find((d) => d.name === name);
      if (!db) throw new Error(`app ${spec.name} has no database named "${name}"`);
      return { ...db.credentials, host: HOST, port };
    },
    alive: () => cluster !== undefined && started.alive(),
    logs: (tail) => started.logs(tail),
    dispose,
  };
}
