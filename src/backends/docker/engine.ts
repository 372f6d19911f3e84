import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { TopasError } from '../../errors';

// The Ryuk reaper image cannot be pulled here, and topas removes what it makes
// itself (dispose, sweep by labels). Set before testcontainers reads it:
// testcontainers reads its settings from process.env itself, not from Io.env.
process.env.TESTCONTAINERS_RYUK_DISABLED ??= 'true';

// testcontainers is loaded when first needed (a quarter second of a CLI start): most starts need only dockerode
import type { ContainerRuntimeClient } from 'testcontainers';

function testcontainers(): typeof import('testcontainers') {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require('testcontainers') as typeof import('testcontainers');
}

/** dockerode as testcontainers types it (its @types/dockerode is newer than the root one) */
export type Dockerode = ContainerRuntimeClient['container']['dockerode'];

export const ENGINE_HINT = 'start Docker (scripts/ensure-docker.sh) or use --backend local';
const PULL_TIMEOUT_MS = 120_000;

export interface Engine {
  /** testcontainers' client of the same engine (exec), loaded on first use */
  client(): Promise<ContainerRuntimeClient>;
  docker: Dockerode;
}

/**
 * The engine's unix socket when nothing but DOCKER_HOST (unix://) or the
 * default socket names one: the engine testcontainers would pick too, reached
 * with its own dockerode without loading it. Undefined for everything else
 * (its properties file, host overrides, tcp, rootless sockets): testcontainers decides.
 */
function plainSocket(env: NodeJS.ProcessEnv): string | undefined {
  if (Object.keys(env).some((k) => k.startsWith('TESTCONTAINERS_') && k !== 'TESTCONTAINERS_RYUK_DISABLED')) return undefined;
  if (fs.existsSync(path.join(os.homedir(), '.testcontainers.properties'))) return undefined;
  const host = env.DOCKER_HOST;
  if (host) return host.startsWith('unix://') ? new URL(host).pathname : undefined;
  return fs.existsSync('/var/run/docker.sock') ? '/var/run/docker.sock' : undefined;
}

/**
 * dockerode without loading testcontainers: the same version testcontainers resolves (one copy
 * in node_modules), a direct dependency so the single executable's bundle carries it too.
 */
function dockerodeClass(): new (opts: { socketPath: string }) => Dockerode {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require('dockerode') as new (opts: { socketPath: string }) => Dockerode;
}

/**
 * How long an engine that answered is taken as answering: one command's probe,
 * sweep and start share a ping instead of making one each (a round trip on a
 * busy engine), while a later command asks again.
 */
const ANSWERED_TTL_MS = 2000;
let answered: { at: number; dockerHost: string | undefined; engine: Engine } | undefined;

/** The testcontainers runtime client (and its dockerode); BACKEND_UNAVAILABLE when no engine answers. */
export async function connectEngine(): Promise<Engine> {
  const dockerHost = process.env.DOCKER_HOST;
  if (answered && answered.dockerHost === dockerHost && Date.now() - answered.at < ANSWERED_TTL_MS) return answered.engine;
  const engine = await connectOnce();
  answered = { at: Date.now(), dockerHost, engine };
  return engine;
}

async function connectOnce(): Promise<Engine> {
  try {
    // testcontainers falls back to the default socket when DOCKER_HOST does not
    // answer; a user who named an engine must get that engine or an error.
    // It reads DOCKER_HOST from process.env itself, so this checks the same one.
    if (process.env.DOCKER_HOST) await pingDockerHost(process.env.DOCKER_HOST);
    const socket = plainSocket(process.env);
    if (socket) {
      const docker = new (dockerodeClass())({ socketPath: socket });
      await docker.ping();
      return { docker, client: () => testcontainers().getContainerRuntimeClient() };
    }
    const client = await testcontainers().getContainerRuntimeClient();
    await client.container.dockerode.ping();
    return { client: async () => client, docker: client.container.dockerode };
  } catch (err) {
    throw new TopasError('BACKEND_UNAVAILABLE', `the Docker engine is not reachable: ${(err as Error).message}`, {
      hint: ENGINE_HINT,
      cause: err,
    });
  }
}

/** GET /_ping on a DOCKER_HOST (unix:// or tcp://), bounded. */
function pingDockerHost(dockerHost: string, timeoutMs = 3000): Promise<void> {
  const url = new URL(dockerHost);
  const target: http.RequestOptions =
    url.protocol === 'unix:' ? { socketPath: url.pathname } : { host: url.hostname, port: Number(url.port) || 2375 };
  return new Promise((resolve, reject) => {
    const req = http.get({ ...target, path: '/_ping', timeout: timeoutMs }, (res) => {
      res.resume();
      if (res.statusCode === 200) resolve();
      else reject(new Error(`DOCKER_HOST ${dockerHost} answered HTTP ${res.statusCode}`));
    });
    req.on('timeout', () => req.destroy(new Error(`DOCKER_HOST ${dockerHost} did not answer within ${timeoutMs} ms`)));
    req.on('error', (err) => reject(new Error(`DOCKER_HOST ${dockerHost}: ${err.message}`)));
  });
}

/** `image:version`; an image that already names a tag (or digest) is kept as written when no version is given. */
export function imageRef(image: string, version?: string): string {
  if (version !== undefined && version !== '') return `${stripTag(image)}:${version}`;
  return hasTag(image) ? image : `${image}:latest`;
}

function hasTag(image: string): boolean {
  if (image.includes('@')) return true;
  const last = image.slice(image.lastIndexOf('/') + 1);
  return last.includes(':');
}

function stripTag(image: string): string {
  const at = image.indexOf('@');
  if (at >= 0) return image.slice(0, at);
  const slash = image.lastIndexOf('/');
  const colon = image.lastIndexOf(':');
  return colon > slash ? image.slice(0, colon) : image;
}

export function versionOf(ref: string): string {
  const slash = ref.lastIndexOf('/');
  const colon = ref.lastIndexOf(':');
  return colon > slash ? ref.slice(colon + 1) : 'latest';
}

/**
 * Use the local image when present, else try to pull it (bounded). A failed
 * pull is IMAGE_NOT_FOUND with what to do about it.
 */
export async function ensureImage(docker: Dockerode, ref: string, log?: (line: string) => void): Promise<void> {
  try {
    await docker.getImage(ref).inspect();
    return;
  } catch (err) {
    if ((err as { statusCode?: number }).statusCode !== 404) throw engineError(err);
  }
  log?.(`docker: pulling ${ref}`);
  try {
    await pullImage(docker, ref);
  } catch (err) {
    throw new TopasError('IMAGE_NOT_FOUND', `image ${ref} is not available locally and could not be pulled`, {
      hint: 'build it (docker build -t ...) or load it (docker load -i ...); for the fixtures run scripts/build-fixture-images.sh',
      cause: err,
    });
  }
}

async function pullImage(docker: Dockerode, ref: string): Promise<void> {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), PULL_TIMEOUT_MS);
  try {
    const stream = (await docker.pull(ref, { abortSignal: abort.signal })) as NodeJS.ReadableStream;
    await new Promise<void>((resolve, reject) => {
      docker.modem.followProgress(stream, (err: Error | null, events: Array<{ error?: string }>) => {
        const failed = events?.find((e) => e.error);
        if (err) reject(err);
        else if (failed) reject(new Error(failed.error));
        else resolve();
      });
    });
    await docker.getImage(ref).inspect();
  } finally {
    clearTimeout(timer);
  }
}

/** An engine call that failed in a way that means the engine is gone. */
function engineError(err: unknown): Error {
  const e = err as NodeJS.ErrnoException;
  if (e && (e.code === 'ECONNREFUSED' || e.code === 'ENOENT' || e.code === 'EACCES')) {
    return new TopasError('BACKEND_UNAVAILABLE', `the Docker engine is not reachable: ${e.message}`, { hint: ENGINE_HINT, cause: err });
  }
  return err as Error;
}

/** `docker logs` output of a container without a TTY is multiplexed: 8-byte frame headers. */
function demuxLogs(buf: Buffer): string {
  let out = '';
  let i = 0;
  while (i + 8 <= buf.length) {
    const type = buf[i];
    const size = buf.readUInt32BE(i + 4);
    if (type > 2 || buf[i + 1] !== 0 || buf[i + 2] !== 0 || buf[i + 3] !== 0) {
      // not multiplexed (TTY container): plain text
      return buf.toString('utf8');
    }
    out += buf.subarray(i + 8, i + 8 + size).toString('utf8');
    i += 8 + size;
  }
  return out;
}

export async function containerLogs(docker: Dockerode, id: string, tail?: number): Promise<string> {
  try {
    const raw = (await docker.getContainer(id).logs({
      stdout: true,
      stderr: true,
      follow: false,
      ...(tail !== undefined ? { tail } : {}),
    })) as unknown as Buffer;
    return demuxLogs(Buffer.isBuffer(raw) ? raw : Buffer.from(String(raw)));
  } catch {
    return '';
  }
}
