import { createHash } from 'node:crypto';
import { sleep } from '../readiness';
import { containerLogs, type Dockerode } from './engine';

/**
 * Most of a database's first start is initdb (about 2 s of the 3.5 s the
 * docker backend takes to stand up PostgreSQL and two replicas here), and
 * it makes the same files every time for the same image and credentials.
 * So the first run of an image + credentials also makes a template: the
 * same image initialised once, shut down cleanly and committed as an image
 * whose data folder is not a volume. Later runs start from it: the
 * entrypoint finds PG_VERSION, skips initdb and starts the server. The
 * database they get is the one initdb would have made; initSQL still runs
 * on it, per run. TOPAS_PG_TEMPLATE=off turns it off.
 */

/** Outside the images' VOLUME (/var/lib/postgresql/data), so a commit keeps it. */
export const TEMPLATE_PGDATA = '/var/lib/postgresql/topas-template';
const TEMPLATE_REPO = 'topas-pg-template';
/** changes when what a template holds changes, so older ones are not used */
const TEMPLATE_FORMAT = '1';
const TEMPLATE_LABEL = 'topas.pg-template';
/** on the container that makes a template: the run making it (blanked on the image, so its containers do not carry it) */
export const TEMPLATE_BUILD_LABEL = 'topas.pg-template-build';
const BUILD_TIMEOUT_MS = 120_000;
const STOP_GRACE_S = 30;
/**
 * Templates kept on the machine: one per image id + credentials, so a
 * rebuilt or upgraded image, or new credentials, would add one each time
 * (tens of MB of data folder over the shared base layers) with no end.
 */
export const MAX_TEMPLATES = 4;

export interface TemplateSource {
  image: string;
  user: string;
  password: string;
  dbname: string;
  /** the server's arguments (the run's database gets the same) */
  args: string[];
}

export function templatesEnabled(env: NodeJS.ProcessEnv): boolean {
  return !/^(off|0|false|no)$/i.test(env.TOPAS_PG_TEMPLATE ?? '');
}

/** The template's tag for this image (by id: a rebuilt image gets a new one) and these credentials; undefined when the image is not here. */
export async function templateTag(docker: Dockerode, src: TemplateSource): Promise<string | undefined> {
  let imageId: string;
  try {
    imageId = (await docker.getImage(src.image).inspect()).Id;
  } catch {
    return undefined;
  }
  const key = createHash('sha256').update(JSON.stringify([TEMPLATE_FORMAT, imageId, src.user, src.password, src.dbname])).digest('hex').slice(0, 16);
  return `${TEMPLATE_REPO}:${key}`;
}

export async function hasTemplate(docker: Dockerode, tag: string): Promise<boolean> {
  try {
    return (await docker.getImage(tag).inspect()).Config?.Labels?.[TEMPLATE_LABEL] === TEMPLATE_FORMAT;
  } catch {
    return false;
  }
}

/** The environment a container of the image needs: POSTGRES_* as usual, and the data folder outside the volume. */
export function templateEnv(src: TemplateSource): Record<string, string> {
  return { POSTGRES_USER: src.user, POSTGRES_PASSWORD: src.password, POSTGRES_DB: src.dbname, POSTGRES_INITDB_ARGS: '--no-sync', PGDATA: TEMPLATE_PGDATA };
}

export interface BuildOptions {
  /** the container's name (the run's prefix) */
  name: string;
  /**
   * The run making it: removing the run removes a build it left. Not the
   * run's own labels: the driver takes a container with those for one of
   * the run's, and a container made from the template inherits the image's.
   */
  runId: string;
  /** the owner labels of the run (labels.ts): a sweep removes a build whose topas died */
  owner: Record<string, string>;
  signal?: AbortSignal;
}

/**
 * Initialises the image once in a container of its own (no network), stops
 * it cleanly and commits it as `tag`. Throws when any step fails; a failed
 * build leaves nothing (the next run tries again).
 */
export async function buildTemplate(docker: Dockerode, src: TemplateSource, tag: string, opts: BuildOptions): Promise<void> {
  const env = templateEnv(src);
  const c = await docker.createContainer({
    name: opts.name,
    Image: src.image,
    Cmd: ['postgres', ...src.args],
    Env: Object.entries(env).map(([k, v]) => `${k}=${v}`),
    Labels: { ...opts.owner, [TEMPLATE_BUILD_LABEL]: opts.runId },
    HostConfig: { NetworkMode: 'none' },
  });
  try {
    await c.start();
    const deadline = Date.now() + BUILD_TIMEOUT_MS;
    // initdb is done when the server started after it says so (the official image's and the fixture's words)
    for (;;) {
      const logs = await containerLogs(docker, c.id);
      const init = logs.indexOf('init process complete');
      if (init >= 0 && logs.indexOf('ready to accept connections', init) >= 0) break;
      const state = (await c.inspect()).State;
      if (!state.Running) throw new Error(`the container exited (${state.ExitCode}) while initialising`);
      if (opts.signal?.aborted) throw new Error('interrupted');
      if (Date.now() > deadline) throw new Error(`not initialised after ${BUILD_TIMEOUT_MS / 1000} s`);
      await sleep(100);
    }
    // a clean shutdown: the copy starts without recovery
    await c.stop({ t: STOP_GRACE_S });
    const exit = (await c.inspect()).State.ExitCode;
    if (exit !== 0) throw new Error(`the server stopped with exit code ${exit}`);
    if (opts.signal?.aborted) throw new Error('interrupted');
    const [repo, version] = tag.split(':');
    await c.commit({
      _query: { container: c.id, repo, tag: version, changes: [`LABEL ${TEMPLATE_LABEL}=${TEMPLATE_FORMAT}`, `LABEL ${TEMPLATE_BUILD_LABEL}=`, 'ENV POSTGRES_PASSWORD='] },
      // the container's own config, with the changes above
      _body: {},
    } as unknown as Parameters<typeof c.commit>[0]);
  } finally {
    await c.remove({ force: true, v: true }).catch(() => undefined);
  }
}

/**
 * After `kept` was made: removes templates of another format, and the oldest
 * beyond MAX_TEMPLATES. Never forced, so a template a container still runs
 * stays; a run that found a template just before it went falls back to
 * initialising (DockerDatabases.start). Returns the tags removed.
 */
export async function pruneTemplates(docker: Dockerode, kept: string, max = MAX_TEMPLATES): Promise<string[]> {
  const images = await docker.listImages({ filters: { label: [TEMPLATE_LABEL] } });
  const tagged = images
    .map((i) => ({ id: i.Id, created: i.Created, format: i.Labels?.[TEMPLATE_LABEL], tags: (i.RepoTags ?? []).filter((t) => t.startsWith(`${TEMPLATE_REPO}:`)) }))
    .sort((a, b) => b.created - a.created);
  const current = tagged.filter((i) => i.format === TEMPLATE_FORMAT);
  const keep = new Set(current.filter((i) => i.tags.includes(kept)).map((i) => i.id));
  for (const i of current) if (keep.size < max && i.tags.length > 0) keep.add(i.id);
  const removed: string[] = [];
  for (const i of tagged) {
    if (keep.has(i.id)) continue;
    // untagged: two runs made the same template and the later commit took the tag
    for (const tag of i.tags.length > 0 ? i.tags : [i.id]) {
      try {
        await docker.getImage(tag).remove();
        removed.push(tag);
      } catch {
        // in use by a container, or removed by another run meanwhile
      }
    }
  }
  return removed;
}

/** The template's image went between the check and the create (another run pruned it). */
export function isMissingImage(err: unknown): boolean {
  const e = err as { statusCode?: number; message?: string };
  return e?.statusCode === 404 && /no such image/i.test(e.message ?? '');
}
