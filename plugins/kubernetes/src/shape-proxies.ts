import type * as k8s from '@kubernetes/client-node';
import { PROXY_HOST_CONFIG_ENV, TopasError, PROXY_HOST_TOKEN_ENV, type AppSpec, type FixedProxyHostConfig, type FixedProxySpec, type ProxyMode } from 'topas';
import { LABELS, componentLabels, labelValue, objectName, parentName, podSelector, portName, runLabels, serviceHost, shapeProxyComponent, type RenderOptions } from './manifests';

/**
 * Traffic shaping on a cluster, as plain objects (pure functions): next to
 * every service and database a proxy Deployment (one pod of the runner image
 * running `topas proxy-host --serve`) and a Service. The proxy listens on the
 * component's own ports and forwards to the component's Service; dependents'
 * references resolve to the proxy's Service (resolveForCluster), and the
 * runner reaches its control port by that Service's DNS name to set shapes
 * (kube-shaping.ts). One token per run, in a Secret, guards the control API.
 * All of it carries the run labels and is owned by the run's parent.
 */

/** where a proxy pod's control API listens, unless the component uses that port itself */
export const SHAPE_CONTROL_PORT = 15000;
const TOKEN_KEY = 'token';

/** The shaping proxies' image: the runner image (its single executable has the proxy host). */
export interface ShapeRenderOptions extends RenderOptions {
  proxyImage: string;
}

/** A port of the component's for the control API: SHAPE_CONTROL_PORT, else the next one it does not use. */
export function controlPortFor(ports: number[]): number {
  let p = SHAPE_CONTROL_PORT;
  while (ports.includes(p)) p++;
  return p;
}

export function shapeTokenSecretName(app: string, runId: string): string {
  return `${parentName(app, runId)}-shape`;
}

export function shapeTokenSecret(app: string, opts: RenderOptions, token: string): k8s.V1Secret {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: shapeTokenSecretName(app, opts.runId), namespace: opts.namespace, labels: { ...runLabels(app, opts.runId), [LABELS.kind]: 'shape' } },
    type: 'Opaque',
    stringData: { [TOKEN_KEY]: token },
  };
}

/** The token from the Secret as the API server returns it (base64 data). */
export function tokenOf(secret: k8s.V1Secret): string | undefined {
  const raw = secret.data?.[TOKEN_KEY];
  return raw ? Buffer.from(raw, 'base64').toString('utf8') : undefined;
}

/** A component's ports as its proxy serves them: `main` (HTTP mode unless TLS, so http_fault can answer requests), named ones and a database's as TCP. */
export interface ProxiedPort {
  /** `main`, a named port, or `db` */
  name: string;
  port: number;
  mode: ProxyMode;
}

export function proxiedPorts(spec: AppSpec, component: string): ProxiedPort[] {
  const db = spec.databases.find((d) => d.name === component);
  if (db) return [{ name: 'db', port: db.port, mode: 'tcp' }];
  const svc = spec.services.find((s) => s.name === component);
  if (!svc) throw new Error(`no service or database named "${component}"`);
  return [{ name: 'main', port: svc.port, mode: svc.tls ? 'tcp' : 'http' }, ...Object.entries(svc.ports).map(([n, p]) => ({ name: n, port: p, mode: 'tcp' as const }))];
}

/** The control API of a component's proxy, as the runner reaches it. */
export function controlAddress(spec: AppSpec, component: string, opts: RenderOptions): { host: string; port: number } {
  return { host: serviceHost(spec.name, shapeProxyComponent(component), opts.runId, opts.namespace), port: controlPortFor(proxiedPorts(spec, component).map((p) => p.port)) };
}

/** What the proxy pod serves: each port of the component, forwarding to the component's own Service on it. */
export function proxyHostConfig(spec: AppSpec, component: string, opts: RenderOptions): FixedProxyHostConfig {
  const ports = proxiedPorts(spec, component);
  const upstream = serviceHost(spec.name, component, opts.runId, opts.namespace);
  const proxies: FixedProxySpec[] = ports.map((p) => ({ key: `${component}:${p.name}`, service: component, mode: p.mode, listen: { host: '0.0.0.0', port: p.port }, targets: [{ host: upstream, port: p.port }] }));
  return { control: { host: '0.0.0.0', port: controlPortFor(ports.map((p) => p.port)) }, proxies };
}

export interface ShapeProxyObjects {
  deployment: k8s.V1Deployment;
  service: k8s.V1Service;
}

export function shapeProxyObjects(spec: AppSpec, component: string, opts: ShapeRenderOptions): ShapeProxyObjects {
  const proxy = shapeProxyComponent(component);
  const name = objectName(spec.name, proxy, opts.runId);
  const labels = { ...componentLabels(spec.name, opts.runId, proxy, 'shape'), 'topas.dev/shapes': labelValue(component) };
  const config = proxyHostConfig(spec, component, opts);
  const ports: k8s.V1ContainerPort[] = [
    ...proxiedPorts(spec, component).map((p) => ({ name: p.name === 'db' ? 'postgres' : portName(p.name), containerPort: p.port })),
    { name: 'shape-control', containerPort: config.control.port },
  ];
  return {
    deployment: {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name, namespace: opts.namespace, labels },
      spec: {
        replicas: 1,
        selector: { matchLabels: podSelector(spec.name, opts.runId, proxy) },
        revisionHistoryLimit: 1,
        template: {
          metadata: { labels },
          spec: {
            automountServiceAccountToken: false,
            enableServiceLinks: false,
            terminationGracePeriodSeconds: 2,
            containers: [
              {
                name: 'shaping-proxy',
                image: opts.proxyImage,
                imagePullPolicy: 'IfNotPresent',
                command: ['topas', 'proxy-host', '--serve'],
                env: [
                  { name: PROXY_HOST_TOKEN_ENV, valueFrom: { secretKeyRef: { name: shapeTokenSecretName(spec.name, opts.runId), key: TOKEN_KEY } } },
                  { name: PROXY_HOST_CONFIG_ENV, value: JSON.stringify(config) },
                ],
                ports,
                // the control port listens once every proxy does
                readinessProbe: { tcpSocket: { port: 'shape-control' as unknown as k8s.IntOrString }, periodSeconds: 1, timeoutSeconds: 1, failureThreshold: 3, successThreshold: 1 },
              },
            ],
          },
        },
      },
    },
    service: {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name, namespace: opts.namespace, labels },
      spec: {
        selector: podSelector(spec.name, opts.runId, proxy),
        // port = targetPort, as the component's own Service
        ports: ports.map((p) => ({ name: p.name, port: p.containerPort, targetPort: p.name as unknown as k8s.IntOrString, protocol: 'TCP' })),
      },
    },
  };
}

/** A proxy that did not get ready: the same error, saying whose proxy it is and what it needs. */
export function proxyNotReady(err: unknown, component: string, image: string): unknown {
  if (!(err instanceof TopasError) || err.code !== 'READINESS_TIMEOUT') return err;
  return new TopasError('READINESS_TIMEOUT', `${err.message} (the shaping proxy of ${component})`, {
    problems: err.problems,
    hint: `the proxy runs the runner image ${image} (scripts/build-runner-image.sh, or TOPAS_RUNNER_IMAGE); TOPAS_KUBE_SHAPING=off stands the app up without shaping proxies`,
  });
}
