import * as crypto from 'node:crypto';
import { ProxyHostClient, ShapeController, TopasError, isUnshaped, type AppSpec, type ProxyMode, type ProxyTarget, type ShapeState, type ShapeTarget, type ShapingProxyStats } from 'topas';
import { controlAddress, proxiedPorts, shapeTokenSecretName, tokenOf } from './shape-proxies';
import { statusOf, type Cluster } from './cluster';
import { serviceHost, shapeProxyComponent, type RenderOptions } from './manifests';

/** `TOPAS_KUBE_SHAPING=off`: no shaping proxies (no runner image needed for `topas up`; `shape.*` then fails, saying so). */
export function shapingWanted(env: NodeJS.ProcessEnv): boolean {
  return env.TOPAS_KUBE_SHAPING !== 'off';
}

/** The run's control token, from its Secret (the runner attaching to a SUT the CLI stood up). */
export async function readShapeToken(cluster: Cluster, app: string, runId: string): Promise<string> {
  const name = shapeTokenSecretName(app, runId);
  const missing = () => new TopasError('SUT_NOT_UP', `kubernetes: the shaping token of run ${runId} is missing (Secret ${name})`, { hint: 'stand the app up again (`topas down`, then `topas up`)' });
  const secret = await cluster.core.readNamespacedSecret({ name, namespace: cluster.namespace }).catch((err: unknown) => {
    // not the run's absence (adopt's 404): the run is there, its token is not
    throw statusOf(err) === 404 ? missing() : err;
  });
  const token = tokenOf(secret);
  if (!token) throw missing();
  return token;
}

/** A fresh token for a run's proxies' control API. */
export function newShapeToken(): string {
  return crypto.randomBytes(18).toString('base64url');
}

/** One component's proxy pod, as the ShapeController sees it: shapes go to its control API by Service name. */
class ProxyPodTarget implements ShapeTarget {
  private shape: ShapeState = {};
  constructor(
    private readonly client: ProxyHostClient,
    private readonly component: string,
    private readonly mode: ProxyMode,
    private readonly address: ProxyTarget,
  ) {}

  setShape(state: ShapeState): Promise<void> {
    this.shape = { ...state };
    return this.client.setShape(this.component, state).catch((err: Error) => {
      throw new Error(`the shaping proxy of ${this.component} (${this.address.host}:${this.client.info.controlPort}) did not take the shape: ${err.message}`);
    });
  }

  shaped(): boolean {
    return !isUnshaped(this.shape);
  }

  /** Counters live in the pod; the run sees the shape it set and where the proxy is. */
  stats(): ShapingProxyStats {
    return { name: `${this.component} (proxy pod)`, mode: this.mode, address: { ...this.address }, shape: { ...this.shape }, activeConnections: 0, totalConnections: 0, resetConnections: 0, heldConnections: 0, upstreamErrors: 0, bytesToServer: 0, bytesToClient: 0, httpRequests: 0, faultedRequests: 0, lostRequests: 0 };
  }

  /** The pod belongs to the SUT, not to this run. */
  async close(): Promise<void> {}
}

/**
 * Shaping from the runner pod: a ShapeController over the proxy pods of every
 * service and database (shape-proxies.ts). Registering a proxy sends it the
 * current (empty) shape, so a run starts from an unshaped SUT even if an
 * earlier runner died mid-shape. Scenarios reach a component through its
 * proxy's Service only while it is shaped (`host`), so unshaped traffic
 * takes no extra hop, as on the other backends; dependents always go through
 * the proxy (their references name it).
 */
export class KubeShaping {
  readonly controller: ShapeController;
  private readonly targets = new Map<string, ProxyPodTarget>();

  constructor(
    private readonly spec: AppSpec,
    private readonly opts: RenderOptions,
    token: string,
  ) {
    const components = [...spec.services.map((s) => s.name), ...spec.databases.map((d) => d.name)];
    this.controller = new ShapeController({ services: components });
    for (const name of components) {
      const control = controlAddress(spec, name, opts);
      const main = proxiedPorts(spec, name)[0];
      const client = new ProxyHostClient({ pid: 0, controlPort: control.port, token, host: control.host });
      const target = new ProxyPodTarget(client, name, main.mode, { host: control.host, port: main.port });
      this.targets.set(name, target);
      this.controller.register(name, target);
    }
  }

  /** The host name scenarios reach a component by: its proxy's Service while it is shaped, else its own. */
  host(component: string): string {
    const shaped = this.targets.has(component) && !isUnshaped(this.controller.state(component));
    return serviceHost(this.spec.name, shaped ? shapeProxyComponent(component) : component, this.opts.runId, this.opts.namespace);
  }

  /** End of a run: what it shaped goes back to unshaped (the proxies outlive the run with the SUT). */
  async resetShaped(): Promise<string[]> {
    await this.controller.settled().catch(() => undefined);
    // past the run's record: straight to the proxies, not through the controller's history
    const shaped = [...this.targets].filter(([, t]) => t.shaped());
    await Promise.all(shaped.map(([, t]) => t.setShape({})));
    return shaped.map(([name]) => name);
  }
}

/** The runner's `require("shape")` on a SUT stood up without proxies: every call says why it cannot shape. */
export class NoShapingProxies extends ShapeController {
  override apply(): never {
    throw new TopasError('SCENARIO_FAILED', 'shape: this SUT on kubernetes has no shaping proxies (it was stood up with TOPAS_KUBE_SHAPING=off, or before topas made them)', {
      hint: 'stand it up again without TOPAS_KUBE_SHAPING=off (`topas down`, then `topas up` or `topas run`)',
    });
  }
}
