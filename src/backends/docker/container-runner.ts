import type { WaitStrategy } from 'testcontainers';
import { TopasError } from '../../errors';
import { formatDurationMs } from '../../util/duration';
import { lastLines } from '../readiness';
import { containerLogs, type Dockerode } from './engine';

export interface ContainerRequest {
  name: string;
  image: string;
  env: Record<string, string>;
  labels: Record<string, string>;
  network: string;
  aliases: string[];
  /** container ports to publish on 127.0.0.1 (random host ports) */
  ports: number[];
  cmd?: string[];
  /** readiness checked by testcontainers during start (tcp, log); others are checked by the caller */
  wait?: WaitStrategy;
  startupTimeoutMs: number;
  /** called with the id as soon as the container exists, before it is started or waited for */
  onCreated: (id: string) => void;
}

export interface StartedContainer {
  id: string;
  name: string;
  /** container port -> host port on 127.0.0.1 */
  hostPorts: Map<number, number>;
}

/** Testcontainers' wait strategies need something to wait on; this one is ready at once. */
class ReadyAtOnce implements WaitStrategy {
  private timeoutMs = 60_000;
  async waitUntilReady(): Promise<void> {}
  withStartupTimeout(ms: number): this {
    this.timeoutMs = ms;
    return this;
  }
  isStartupTimeoutSet(): boolean {
    return true;
  }
  getStartupTimeout(): number {
    return this.timeoutMs;
  }
}

/**
 * Create, start, one inspect for the host ports. A container with a wait
 * strategy (tcp, log readiness) goes through testcontainers, which checks it;
 * every other one is made with dockerode directly: testcontainers' start adds
 * round trips (image check, inspects) that the caller does not need.
 */
export async function runContainer(req: ContainerRequest, docker?: Dockerode): Promise<StartedContainer> {
  if (req.wait || !docker) return runWithTestcontainers(req);
  const created = await createContainer(docker, req);
  return startCreated(docker, created, req.ports);
}

/** A container made but not started (a dependent made while what it depends on becomes ready). */
export interface CreatedContainer {
  id: string;
  name: string;
}

/** Create the container of `req` (publishing on 127.0.0.1, on the run network with its aliases); not started. */
export async function createContainer(docker: Dockerode, req: ContainerRequest): Promise<CreatedContainer> {
  const exposed = Object.fromEntries(req.ports.map((p) => [`${p}/tcp`, {}]));
  const bindings = Object.fromEntries(req.ports.map((p) => [`${p}/tcp`, [{ HostIp: '127.0.0.1', HostPort: '' }]]));
  const c = await docker.createContainer({
    name: req.name,
    Image: req.image,
    Env: Object.entries(req.env).map(([k, v]) => `${k}=${v}`),
    Labels: req.labels,
    ExposedPorts: exposed,
    ...(req.cmd ? { Cmd: req.cmd } : {}),
    HostConfig: { NetworkMode: req.network, PortBindings: bindings },
    NetworkingConfig: { EndpointsConfig: { [req.network]: { Aliases: req.aliases } } },
  });
  req.onCreated(c.id);
  return { id: c.id, name: req.name };
}

/** Start a created container; its host ports from one inspect (a few more while the engine has not bound them yet). */
export async function startCreated(docker: Dockerode, c: CreatedContainer, ports: number[]): Promise<StartedContainer> {
  await docker.getContainer(c.id).start();
  let hostPorts = new Map<number, number>();
  for (let i = 0; i < 20; i++) {
    const st = await inspectHostPorts(docker, c.id);
    hostPorts = st.hostPorts;
    if (ports.every((p) => hostPorts.has(p)) || !st.running) break;
    await new Promise((r) => setTimeout(r, 25));
  }
  const missing = ports.filter((p) => !hostPorts.has(p));
  if (missing.length) throw new TopasError('SUT_START_FAILED', `container ${c.name} exited right after start (port(s) ${missing.join(', ')} never published)`);
  return { id: c.id, name: c.name, hostPorts };
}

/** testcontainers, loaded only for a container with a wait strategy (tcp, log readiness) */
function testcontainers(): typeof import('testcontainers') {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require('testcontainers') as typeof import('testcontainers');
}

/**
 * A testcontainers GenericContainer that publishes on 127.0.0.1 only (not every
 * interface) and joins the run network with its aliases at create time (one
 * network, no extra connect call, no default bridge). Made on first use, with testcontainers.
 */
function topasContainer(req: ContainerRequest) {
  class TopasContainer extends testcontainers().GenericContainer {
    protected override async beforeContainerCreated(): Promise<void> {
      const bindings = this.hostConfig.PortBindings as Record<string, Array<{ HostPort: string; HostIp?: string }>> | undefined;
      for (const list of Object.values(bindings ?? {})) for (const b of list) b.HostIp = '127.0.0.1';
      this.createOpts.NetworkingConfig = { EndpointsConfig: { [req.network]: { Aliases: req.aliases } } };
    }

    protected override async containerCreated(containerId: string): Promise<void> {
      req.onCreated(containerId);
    }
  }
  return new TopasContainer(req.image);
}

async function runWithTestcontainers(req: ContainerRequest): Promise<StartedContainer> {
  const c = topasContainer(req)
    .withName(req.name)
    .withEnvironment(req.env)
    .withLabels(req.labels)
    .withNetworkMode(req.network)
    .withExposedPorts(...req.ports)
    .withWaitStrategy(req.wait ?? new ReadyAtOnce())
    .withStartupTimeout(req.startupTimeoutMs);
  if (req.cmd) c.withCommand(req.cmd);
  const started = await c.start();
  const hostPorts = new Map<number, number>();
  for (const p of req.ports) hostPorts.set(p, started.getMappedPort(p));
  return { id: started.getId(), name: req.name, hostPorts };
}

/** Testcontainers' strategy for `ready: {tcp}` / `{log}`; undefined for the ones topas checks itself. */
export function waitStrategyFor(ready: { kind: string; pattern?: string }): WaitStrategy | undefined {
  if (ready.kind === 'tcp') {
    // checks inside the container too: the docker-proxy accepts on the host port before the app listens
    return testcontainers().Wait.forListeningPorts();
  }
  if (ready.kind === 'log' && ready.pattern !== undefined) return testcontainers().Wait.forLogMessage(logRegExp(ready.pattern));
  return undefined;
}

/** Same meaning as readiness.logMatcher: the text as a substring, or as a regular expression when it is one. */
function logRegExp(pattern: string): RegExp {
  const literal = pattern.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  try {
    new RegExp(pattern);
    return new RegExp(`${literal}|(?:${pattern})`, 'm');
  } catch {
    return new RegExp(literal, 'm');
  }
}

/** Host ports of a running container (attach, and after a restart the ports may change). */
export async function inspectHostPorts(docker: Dockerode, id: string): Promise<{ running: boolean; hostPorts: Map<number, number> }> {
  const info = await docker.getContainer(id).inspect();
  const hostPorts = new Map<number, number>();
  for (const [key, binds] of Object.entries(info.NetworkSettings?.Ports ?? {})) {
    const b = (binds ?? []).find((x) => x.HostPort);
    if (b) hostPorts.set(Number(key.split('/')[0]), Number(b.HostPort));
  }
  return { running: info.State?.Running === true, hostPorts };
}

/**
 * Watches a container's exit so readiness probes fail at once when it dies
 * (`liveness` of readiness.ts) instead of burning the whole timeout.
 */
export class ExitWatch {
  private exited: string | undefined;
  private readonly timer: NodeJS.Timeout;
  private polling = false;

  constructor(
    private readonly docker: Dockerode,
    private readonly id: string,
    intervalMs = 250,
  ) {
    // Polling inspect, not `docker wait`: a pending wait request would hold the
    // process open; this timer is unref'd and stopped with the probe.
    this.timer = setInterval(() => void this.check(), intervalMs);
    this.timer.unref();
  }

  private async check(): Promise<void> {
    if (this.polling || this.exited !== undefined) return;
    this.polling = true;
    try {
      const info = await this.docker.getContainer(this.id).inspect();
      if (info.State && !info.State.Running && !info.State.Restarting && info.State.Status !== 'created') {
        this.exited = `exit code ${info.State.ExitCode}`;
      }
    } catch {
      this.exited = 'container is gone';
    } finally {
      this.polling = false;
    }
  }

  liveness = (): string | undefined => this.exited;

  /** Last log lines, for error messages. */
  async describe(): Promise<string> {
    const logs = await containerLogs(this.docker, this.id, 20);
    return lastLines(logs, 10);
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

/** A start error as a TopasError (testcontainers throws plain errors); the caller adds log lines and hints. */
export function startFailed(label: string, err: unknown, timeoutMs: number): TopasError {
  if (err instanceof TopasError) return err;
  const msg = (err as Error)?.message ?? String(err);
  if (/timed out|timeout/i.test(msg)) {
    return new TopasError('READINESS_TIMEOUT', `${label}: not ready after ${formatDurationMs(timeoutMs)} (${msg})`, { cause: err });
  }
  return new TopasError('SUT_START_FAILED', `${label}: ${msg}`, { cause: err });
}

/** How a container ended (`exit code 1`), or undefined while it runs (or cannot be asked). */
export async function exitOf(docker: Dockerode, id: string): Promise<string | undefined> {
  try {
    const info = await docker.getContainer(id).inspect();
    if (info.State && !info.State.Running && !info.State.Restarting && info.State.Status !== 'created') return `exit code ${info.State.ExitCode}`;
    return undefined;
  } catch {
    return 'container is gone';
  }
}
