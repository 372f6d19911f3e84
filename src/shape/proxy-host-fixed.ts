import type * as http from 'node:http';
import { TopasError } from '../errors';
import { controlServer, PROXY_HOST_TOKEN_ENV, type Hosted } from './proxy-host';
import { ShapingProxy, type ProxyMode, type ProxyTarget } from './shaping-proxy';
import type { ShapeState } from './shape-state';

/**
 * A proxy host with a fixed set of proxies, each listening on a given port and
 * forwarding to given upstreams: what a cluster runs next to a service (the
 * kubernetes plugin's proxy Deployment, `topas proxy-host --serve`), where the
 * upstream is the service's own Service name and dependents reach the proxy
 * by another one. Its proxies exist from the start (dependents connect before
 * any run does); runs only set shapes through the same control API as the
 * detached host's (`PUT /shape`, `GET /stats`), by the pod's Service name.
 */
export const PROXY_HOST_CONFIG_ENV = 'TOPAS_PROXY_HOST_CONFIG';

export interface FixedProxySpec {
  /** unique in the host, e.g. `api:main` */
  key: string;
  /** the shape of this service applies to the proxy */
  service: string;
  mode: ProxyMode;
  listen: ProxyTarget;
  /** host names are resolved per connection, so a Service name follows its pods */
  targets: ProxyTarget[];
}

export interface FixedProxyHostConfig {
  control: ProxyTarget;
  proxies: FixedProxySpec[];
}

export interface FixedProxyHost {
  /** where the control API listens (port 0 in the config: a free one) */
  control: ProxyTarget;
  /** each proxy's listening address, by key */
  addresses: Record<string, ProxyTarget>;
  close(): Promise<void>;
}

/** Starts the proxies, then the control API: once the control port answers, every proxy listens (the pod's readiness). */
export async function startFixedProxyHost(config: FixedProxyHostConfig, token: string): Promise<FixedProxyHost> {
  const hosted = new Map<string, Hosted>();
  const shapes = new Map<string, ShapeState>();
  let server: http.Server | undefined;
  const close = async () => {
    await Promise.all([...hosted.values()].map((h) => h.proxy.close()));
    const s = server;
    if (s?.listening) await new Promise<void>((resolve) => s.close(() => resolve()));
  };
  try {
    for (const p of config.proxies) {
      const entry: Hosted = { service: p.service, targets: p.targets.map((t) => ({ ...t })), proxy: undefined as unknown as ShapingProxy };
      entry.proxy = new ShapingProxy({ name: `${p.key} (proxy of ${p.service})`, mode: p.mode, listenHost: p.listen.host, listenPort: p.listen.port, targets: () => entry.targets });
      hosted.set(p.key, entry);
      await entry.proxy.start();
    }
    const s = controlServer({ token, hosted, shapes, stop: () => void close().then(() => process.exit(0)) });
    server = s;
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.listen(config.control.port, config.control.host, () => {
        s.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    await close();
    throw err;
  }
  const port = (server.address() as { port: number }).port;
  return {
    control: { host: config.control.host, port },
    addresses: Object.fromEntries([...hosted].map(([k, h]) => [k, h.proxy.stats().address!])),
    close,
  };
}

/** Validates the config a pod got in its environment (it is written by topas, but read by another process). */
export function parseFixedConfig(text: string | undefined): FixedProxyHostConfig {
  const fail = (why: string): never => {
    throw new TopasError('INVALID_FLAGS', `topas proxy-host --serve: ${PROXY_HOST_CONFIG_ENV} ${why}`);
  };
  if (!text) return fail('is not set');
  let c: FixedProxyHostConfig;
  try {
    c = JSON.parse(text) as FixedProxyHostConfig;
  } catch (err) {
    return fail(`is not JSON: ${(err as Error).message}`);
  }
  const addr = (a: unknown, what: string) => {
    const t = a as ProxyTarget | undefined;
    if (!t || typeof t.host !== 'string' || !Number.isInteger(t.port) || t.port < 0 || t.port > 65535) fail(`${what}: expected {host, port}`);
  };
  addr(c.control, 'control');
  if (!Array.isArray(c.proxies)) fail('proxies: expected a list');
  c.proxies.forEach((p, i) => {
    if (typeof p.key !== 'string' || typeof p.service !== 'string') fail(`proxies[${i}]: expected key and service`);
    if (p.mode !== 'http' && p.mode !== 'tcp') fail(`proxies[${i}].mode: expected http or tcp`);
    addr(p.listen, `proxies[${i}].listen`);
    if (!Array.isArray(p.targets)) fail(`proxies[${i}].targets: expected a list`);
    p.targets.forEach((t, j) => addr(t, `proxies[${i}].targets[${j}]`));
  });
  return c;
}

/** `topas proxy-host --serve`: config in TOPAS_PROXY_HOST_CONFIG, token in TOPAS_PROXY_HOST_TOKEN; serves until SIGTERM. */
export function fixedProxyHostMain(env: NodeJS.ProcessEnv): void {
  const token = env[PROXY_HOST_TOKEN_ENV];
  let config: FixedProxyHostConfig;
  try {
    if (!token) throw new TopasError('INVALID_FLAGS', `topas proxy-host --serve: ${PROXY_HOST_TOKEN_ENV} is not set`);
    config = parseFixedConfig(env[PROXY_HOST_CONFIG_ENV]);
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    process.exitCode = 2;
    return;
  }
  startFixedProxyHost(config, token).then(
    (host) => {
      process.stdout.write(`topas proxy-host: control on ${host.control.host}:${host.control.port}; ${config.proxies.map((p) => `${p.key} ${host.addresses[p.key].port} -> ${p.targets.map((t) => `${t.host}:${t.port}`).join(',')}`).join('; ')}\n`);
      for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, () => void host.close().then(() => process.exit(0)));
    },
    (err: unknown) => {
      process.stderr.write(`topas proxy-host: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(1);
    },
  );
}
