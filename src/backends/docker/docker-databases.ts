import { Client } from 'pg';
import { TopasError } from '../../errors';
import type { AppSpec, DatabaseSpec } from '../../spec/app-spec';
import { formatDurationMs } from '../../util/duration';
import { sleep } from '../readiness';
import { initSqlFailure, logExcerpt, withDetails } from '../start-errors';
import type { DatabaseHandle } from '../../sut/driver';
import { ExitWatch, inspectHostPorts, runContainer, startFailed } from './container-runner';
import { containerLogs, imageRef, versionOf, type Dockerode } from './engine';
import { LABEL } from './labels';
import { buildTemplate, hasTemplate, isMissingImage, MAX_TEMPLATES, pruneTemplates, templateEnv, templatesEnabled, templateTag, type TemplateSource } from './postgres-template';

const STOP_GRACE_S = 10;
/**
 * A test database need not survive a power cut, so it does not wait for the
 * disk (the local backend's cluster runs so too, and Testcontainers' own
 * PostgreSQL module): a killed or restarted container loses nothing, the
 * kernel still holds the writes. initdb --no-sync likewise.
 */
const TEST_DB_ARGS = ['-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off'];

/** Image for a database without one: overridable because a machine may only have a local build. */
function defaultPostgresImage(env: NodeJS.ProcessEnv): string {
  return env.TOPAS_POSTGRES_IMAGE || 'postgres:16-alpine';
}

interface Db {
  spec: DatabaseSpec;
  ref: string;
  id?: string;
  hostPort?: number;
}

export interface DatabaseContainerHooks {
  docker: Dockerode;
  network: string;
  name(db: string): string;
  labels(db: string, ref: string): Record<string, string>;
  closed(): boolean;
  remove(id: string): Promise<void>;
  log(line: string): void;
  runId: string;
}

/** how long the end of a run waits for a template still being made (it is made again next time otherwise) */
const TEMPLATE_SETTLE_MS = 30_000;

/** The docker driver's databases: a postgres container each, on the run network under its name. */
export class DockerDatabases {
  readonly dbs = new Map<string, Db>();
  private readonly templates: boolean;
  /** templates being made by this run, by tag */
  private readonly builds = new Map<string, Promise<void>>();
  private readonly buildAbort = new AbortController();

  constructor(
    private readonly spec: AppSpec,
    private readonly hooks: DatabaseContainerHooks,
    /** the environment topas runs in (StartContext.processEnv) */
    env: NodeJS.ProcessEnv,
  ) {
    for (const d of spec.databases) this.dbs.set(d.name, { spec: d, ref: d.image ? imageRef(d.image, d.version) : defaultPostgresImage(env) });
    this.templates = templatesEnabled(env);
  }

  refs(): string[] {
    return [...this.dbs.values()].map((d) => d.ref);
  }

  get(name: string): Db {
    return this.dbs.get(name)!;
  }

  handle(db: Db): DatabaseHandle {
    return { name: db.spec.name, host: { host: '127.0.0.1', port: db.hostPort ?? 0 }, inside: { host: db.spec.name, port: db.spec.port }, image: db.ref, version: versionOf(db.ref) };
  }

  /** Adopt a container found by label (attach). */
  adopt(name: string, id: string, hostPorts: Map<number, number>): DatabaseHandle | undefined {
    const db = this.dbs.get(name);
    if (!db) return undefined;
    db.id = id;
    db.hostPort = hostPorts.get(db.spec.port);
    return this.handle(db);
  }

  async start(name: string, signal?: AbortSignal): Promise<DatabaseHandle> {
    const db = this.get(name);
    const d = db.spec;
    const label = `database ${d.name}`;
    let createdId: string | undefined;
    const source: TemplateSource = { image: db.ref, user: d.credentials.user, password: d.credentials.password, dbname: d.credentials.dbname, args: TEST_DB_ARGS };
    const tag = this.templates ? await templateTag(this.hooks.docker, source) : undefined;
    let fromTemplate = tag !== undefined && (await hasTemplate(this.hooks.docker, tag));
    const run = () =>
      runContainer({
        name: this.hooks.name(d.name),
        image: fromTemplate ? tag! : db.ref,
        env: fromTemplate ? templateEnv(source) : { POSTGRES_USER: d.credentials.user, POSTGRES_PASSWORD: d.credentials.password, POSTGRES_DB: d.credentials.dbname, POSTGRES_INITDB_ARGS: '--no-sync' },
        labels: this.hooks.labels(d.name, db.ref),
        network: this.hooks.network,
        aliases: [d.name],
        ports: [d.port],
        cmd: ['postgres', ...TEST_DB_ARGS, ...(d.port === 5432 ? [] : ['-p', String(d.port)])],
        startupTimeoutMs: d.ready.timeoutMs,
        onCreated: (id) => {
          createdId = id;
          db.id = id;
          if (this.hooks.closed()) void this.hooks.remove(id);
        },
      }, this.hooks.docker);
    try {
      let started;
      try {
        started = await run();
      } catch (err) {
        if (!fromTemplate || createdId || !isMissingImage(err)) throw err;
        // another run pruned the template after we found it: initialise as without one
        fromTemplate = false;
        started = await run();
      }
      db.hostPort = started.hostPorts.get(d.port);
      await this.waitPostgres(db, signal);
      if (tag && !fromTemplate) this.makeTemplate(d.name, source, tag);
      if (d.initSQL) await this.runInitSql(db);
      return this.handle(db);
    } catch (err) {
      const failed = startFailed(label, err, d.ready.timeoutMs);
      if (!createdId || failed.code === 'INTERRUPTED') throw failed;
      throw withDetails(failed, { excerpt: logExcerpt(await containerLogs(this.hooks.docker, createdId, 100), d.name, 10) });
    }
  }

  /** In the background, once this run's database is up: the next run of this image and credentials starts from it. */
  private makeTemplate(dbName: string, source: TemplateSource, tag: string): void {
    if (this.builds.has(tag) || this.hooks.closed()) return;
    const t0 = Date.now();
    const runLabels = this.hooks.labels(dbName, source.image);
    // the owner's labels only: every container of a run sets them, so one made from the template does not keep the build's
    const owner = Object.fromEntries([LABEL.ownerPid, LABEL.ownerStart, LABEL.ownerPidns].filter((k) => runLabels[k] !== undefined).map((k) => [k, runLabels[k]]));
    const build = buildTemplate(this.hooks.docker, source, tag, { name: this.hooks.name(`${dbName}-template`), runId: this.hooks.runId, owner, signal: this.buildAbort.signal }).then(
      async () => {
        this.hooks.log(`docker: database ${dbName}: kept an initialised copy of ${source.image} as ${tag} in ${Date.now() - t0} ms; later runs start from it`);
        const removed = await pruneTemplates(this.hooks.docker, tag).catch(() => []);
        if (removed.length) this.hooks.log(`docker: removed ${removed.length} older initialised cop${removed.length === 1 ? 'y' : 'ies'} (${removed.join(', ')}); at most ${MAX_TEMPLATES} are kept`);
      },
      (err: Error) => this.hooks.log(`docker: database ${dbName}: no initialised copy of ${source.image} kept (${err.message}); the next run makes its own`),
    );
    this.builds.set(tag, build);
  }

  /** Before the run's containers go: a template still being made gets a little time (unless the run was interrupted). */
  async settleTemplates(interrupted: boolean): Promise<void> {
    if (this.builds.size === 0) return;
    if (interrupted) this.buildAbort.abort();
    const all = Promise.all(this.builds.values());
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([all, new Promise<void>((r) => (timer = setTimeout(() => {
      this.buildAbort.abort();
      r();
    }, TEMPLATE_SETTLE_MS)))]);
    clearTimeout(timer);
    await all;
  }

  /** Start a stopped or dead one again (`graceful`: restart a running one); a never-started one is started. */
  async restart(name: string, graceful: boolean, signal?: AbortSignal): Promise<DatabaseHandle> {
    const db = this.get(name);
    if (!db.id) return this.start(name, signal);
    const c = this.hooks.docker.getContainer(db.id);
    if (graceful) await c.restart({ t: STOP_GRACE_S });
    else
      await c.start().catch((e: { statusCode?: number }) => {
        if (e.statusCode !== 304) throw e;
      });
    // a published port without a fixed host port may move on every start
    db.hostPort = (await inspectHostPorts(this.hooks.docker, db.id)).hostPorts.get(db.spec.port);
    await this.waitPostgres(db, signal);
    return this.handle(db);
  }

  async stop(name: string): Promise<void> {
    const db = this.get(name);
    if (db.id) await this.hooks.docker.getContainer(db.id).stop({ t: STOP_GRACE_S }).catch(() => {});
  }

  private connInfo(db: Db): { host: string; port: number; user: string; password: string; database: string } {
    const c = db.spec.credentials;
    return { host: '127.0.0.1', port: db.hostPort ?? 0, user: c.user, password: c.password, database: c.dbname };
  }

  private async waitPostgres(db: Db, signal?: AbortSignal): Promise<void> {
    const d = db.spec;
    const watch = new ExitWatch(this.hooks.docker, db.id!);
    const deadline = Date.now() + d.ready.timeoutMs;
    let last = 'no attempt yet';
    // short pauses first, doubling to 50ms: readiness is seen soon after postgres accepts
    let pauseMs = 25;
    try {
      for (;;) {
        if (signal?.aborted || this.hooks.closed()) throw new TopasError('INTERRUPTED', `database ${d.name}: readiness wait interrupted`);
        const gone = watch.liveness();
        if (gone) throw new TopasError('SUT_START_FAILED', `database ${d.name}: exited while waiting for readiness: ${gone}`);
        const c = new Client({ ...this.connInfo(db), connectionTimeoutMillis: 2000 });
        try {
          await c.connect();
          await c.query('SELECT 1');
          return;
        } catch (e) {
          last = (e as Error).message;
        } finally {
          await c.end().catch(() => {});
        }
        if (Date.now() >= deadline) {
          throw new TopasError('READINESS_TIMEOUT', `database ${d.name}: not ready after ${formatDurationMs(d.ready.timeoutMs)} (postgres connect: last result ${last})`);
        }
        await sleep(pauseMs, signal);
        pauseMs = Math.min(pauseMs * 2, 50);
      }
    } finally {
      watch.stop();
    }
  }

  /** initSQL from the host through the mapped port, once, before any dependent starts. */
  private async runInitSql(db: Db): Promise<void> {
    const c = new Client({ ...this.connInfo(db), connectionTimeoutMillis: 5000 });
    await c.connect();
    try {
      await c.query(db.spec.initSQL!);
    } catch (err) {
      throw initSqlFailure(this.spec, db.spec, err);
    } finally {
      await c.end().catch(() => {});
    }
  }
}
