import { createHash } from 'node:crypto';
import type * as k8s from '@kubernetes/client-node';
import { resolveReferences, type AppSpec, type DatabaseSpec, type ServiceSpec } from 'topas';

/**
 * The App on a cluster, as plain objects (pure functions, no API calls):
 * per service a Secret (its env), a Deployment (rolling update with
 * maxUnavailable 0, readiness probe from `ready:`, named ports) and a Service;
 * per database a Secret, a StatefulSet, a Service and, with `initSQL`, a Job.
 * Everything carries the app and run labels and is owned by one ConfigMap per
 * run, so deleting that ConfigMap removes the run (the garbage collector).
 */

export const LABELS = {
  managedBy: 'app.kubernetes.io/managed-by',
  app: 'topas.dev/app',
  run: 'topas.dev/run',
  component: 'topas.dev/component',
  kind: 'topas.dev/kind',
  version: 'topas.dev/version',
} as const;

export const ANNOTATIONS = {
  spec: 'topas.dev/spec',
  owner: 'topas.dev/owner',
  kept: 'topas.dev/kept',
  replicas: 'topas.dev/replicas',
  envHash: 'topas.dev/env-hash',
  restartedAt: 'topas.dev/restarted-at',
} as const;

export const MANAGED_BY = 'topas';
export const DEFAULT_POSTGRES_IMAGE = 'postgres:16-alpine';
/** the port every PostgreSQL image listens on inside its container */
const POSTGRES_CONTAINER_PORT = 5432;

export interface RenderOptions {
  runId: string;
  namespace: string;
  /** extra env for every service (--env) */
  env?: Record<string, string>;
  /** image for databases without one (TOPAS_POSTGRES_IMAGE) */
  postgresImage?: string;
  /** every service and database has a shaping proxy (shape-proxies.ts): references resolve to it */
  shaping?: boolean;
}

/** The selector of everything a run made. */
export function runSelector(runId: string): string {
  return `${LABELS.managedBy}=${MANAGED_BY},${LABELS.run}=${labelValue(runId)}`;
}

export function appSelector(app: string): string {
  return `${LABELS.managedBy}=${MANAGED_BY},${LABELS.app}=${labelValue(app)}`;
}

/** A label value: at most 63 of [A-Za-z0-9._-], alphanumeric at both ends. */
export function labelValue(s: string): string {
  return s.replace(/[^A-Za-z0-9._-]/g, '-').slice(0, 63).replace(/^[^A-Za-z0-9]+|[^A-Za-z0-9]+$/g, '') || 'x';
}

/** A DNS-1035 label (Service names): lower-case alphanumerics and '-', a letter first, at most `max`. */
function dnsLabel(s: string, max = 63): string {
  const out = s
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^[^a-z]+/, '')
    .slice(0, max)
    .replace(/-+$/, '');
  return out || 'x';
}

function shortHash(s: string, len = 6): string {
  return createHash('sha256').update(s).digest('hex').slice(0, len);
}

/**
 * The object names of one component in a run: `<app>-<component>-<hash of run>`,
 * so two runs (or two apps) share a namespace without clashing. At most 52
 * characters, which leaves room for the suffixes that controllers add to pod
 * names (and StatefulSet pods' `controller-revision-hash` label, which must fit 63).
 */
export function objectName(app: string, component: string, runId: string): string {
  return `${dnsLabel(`${app}-${component}`, 45)}-${shortHash(runId)}`;
}

export function parentName(app: string, runId: string): string {
  return objectName(app, 'run', runId);
}

/** The component of a service's or database's shaping proxy (its Deployment and Service: shape-proxies.ts). */
export function shapeProxyComponent(component: string): string {
  return `${component}-shape`;
}

/** Where pods reach a component: its Service's cluster DNS name. */
export function serviceHost(app: string, component: string, runId: string, namespace: string): string {
  return `${objectName(app, component, runId)}.${namespace}.svc.cluster.local`;
}

export function runLabels(app: string, runId: string): Record<string, string> {
  return { [LABELS.managedBy]: MANAGED_BY, [LABELS.app]: labelValue(app), [LABELS.run]: labelValue(runId) };
}

export function componentLabels(app: string, runId: string, component: string, kind: 'service' | 'database' | 'init' | 'shape'): Record<string, string> {
  return { ...runLabels(app, runId), [LABELS.component]: labelValue(component), [LABELS.kind]: kind };
}

export function podSelector(app: string, runId: string, component: string): Record<string, string> {
  return { [LABELS.run]: labelValue(runId), [LABELS.component]: labelValue(component) };
}

/** Named ports must be IANA_SVC_NAMEs: at most 15 of [a-z0-9-], a letter in them. */
export function portName(name: string): string {
  const n = name
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 15)
    .replace(/-+$/, '');
  return /[a-z]/.test(n) ? n : `p-${n}`.slice(0, 15);
}

export function imageOf(image: string, version?: string): string {
  if (version) return `${image.replace(/:[^/:]+$/, '')}:${version}`;
  return /:[^/]+$/.test(image) ? image : `${image}:latest`;
}

export function versionOfImage(ref: string): string {
  const m = /:([^/:]+)$/.exec(ref);
  return m ? m[1] : 'latest';
}

/**
 * `${name.field}` as a pod sees it: a component's Service DNS name and its
 * declared port (the Service port equals the container port); with shaping,
 * the Service of its shaping proxy, which listens on the same ports.
 */
export function resolveForCluster(spec: AppSpec, opts: RenderOptions, value: string): string {
  return resolveReferences(value, (name, field) => {
    const host = serviceHost(spec.name, opts.shaping ? shapeProxyComponent(name) : name, opts.runId, opts.namespace);
    const db = spec.databases.find((d) => d.name === name);
    if (db) {
      const c = db.credentials;
      switch (field) {
        case 'url':
          return `postgres://${encodeURIComponent(c.user)}:${encodeURIComponent(c.password)}@${host}:${db.port}/${encodeURIComponent(c.dbname)}`;
        case 'host':
          return host;
        case 'port':
          return String(db.port);
        case 'user':
          return c.user;
        case 'password':
          return c.password;
        case 'dbname':
          return c.dbname;
        case 'name':
          return name;
      }
      throw new Error(`\${${name}.${field}}: databases have no field "${field}"`);
    }
    const svc = spec.services.find((s) => s.name === name);
    if (!svc) throw new Error(`\${${name}.${field}}: no service or database named "${name}"`);
    if (field === 'name') return name;
    if (field === 'url') return `${svc.tls ? 'https' : 'http'}://${host}:${svc.port}`;
    if (field === 'host') return host;
    if (field === 'port') return String(svc.port);
    if (field.startsWith('ports.') && svc.ports[field.slice(6)] !== undefined) return String(svc.ports[field.slice(6)]);
    throw new Error(`\${${name}.${field}}: service ${name} has no field "${field}"`);
  });
}

/** The env a service's pods get: PORT, PORT_<NAME>, TOPAS_VERSION, its `env:` with references resolved, then --env. */
export function serviceEnv(spec: AppSpec, svc: ServiceSpec, opts: RenderOptions, overrides: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = { PORT: String(svc.port) };
  for (const [n, p] of Object.entries(svc.ports)) env[`PORT_${n.toUpperCase().replace(/[^A-Z0-9]/g, '_')}`] = String(p);
  env.TOPAS_VERSION = svc.version ?? versionOfImage(imageOf(svc.image ?? 'unknown'));
  for (const [k, v] of Object.entries({ ...svc.env, ...(opts.env ?? {}), ...overrides })) env[k] = resolveForCluster(spec, opts, v);
  return env;
}

/** A stable hash of an env map: a change in it rolls the Deployment (Secrets alone do not). */
export function envHash(env: Record<string, string>): string {
  return shortHash(JSON.stringify(Object.entries(env).sort(([a], [b]) => (a < b ? -1 : 1))), 16);
}

/** The run's parent: every other object is owned by it. */
export function parentConfigMap(spec: AppSpec, opts: RenderOptions, owner: { host: string; pid: number; startTicks?: number }, startedAt: string): k8s.V1ConfigMap {
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: {
      name: parentName(spec.name, opts.runId),
      namespace: opts.namespace,
      labels: { ...runLabels(spec.name, opts.runId), [LABELS.kind]: 'run' },
      annotations: { [ANNOTATIONS.spec]: spec.file, [ANNOTATIONS.owner]: `${owner.host}:${owner.pid}:${owner.startTicks ?? ''}`, [ANNOTATIONS.kept]: 'false' },
    },
    data: { app: spec.name, runId: opts.runId, specFile: spec.file, startedAt },
  };
}

/** Points an object at the run's parent, so deleting the parent deletes it. */
export function ownedBy<T extends { metadata?: k8s.V1ObjectMeta }>(obj: T, parent: { name: string; uid: string }): T {
  return {
    ...obj,
    metadata: { ...obj.metadata, ownerReferences: [{ apiVersion: 'v1', kind: 'ConfigMap', name: parent.name, uid: parent.uid, blockOwnerDeletion: false }] },
  };
}

function readinessProbe(svc: ServiceSpec): k8s.V1Probe | undefined {
  const r = svc.ready;
  const timing = { periodSeconds: 1, timeoutSeconds: 1, failureThreshold: 3, successThreshold: 1 };
  const port = (p?: number): number | string => (p === undefined || p === svc.port ? 'main' : p);
  if (r.kind === 'http') return { httpGet: { path: r.path, port: port(r.port), scheme: svc.tls && (r.port === undefined || r.port === svc.port) ? 'HTTPS' : 'HTTP' }, ...timing };
  if (r.kind === 'tcp') return { tcpSocket: { port: port(r.port) }, ...timing };
  // `log` readiness (a line in the output) has no probe on a cluster: the pod is Ready once it runs
  return undefined;
}

export interface ServiceObjects {
  secret: k8s.V1Secret;
  deployment: k8s.V1Deployment;
  service: k8s.V1Service;
}

export function serviceObjects(spec: AppSpec, svc: ServiceSpec, opts: RenderOptions, change: { image?: string; version?: string; replicas?: number; env?: Record<string, string> } = {}): ServiceObjects {
  const name = objectName(spec.name, svc.name, opts.runId);
  const labels = componentLabels(spec.name, opts.runId, svc.name, 'service');
  const env = serviceEnv(spec, svc, opts, change.env);
  const image = imageOf(change.image ?? svc.image ?? '', change.version ?? svc.version);
  const version = change.version ?? svc.version ?? versionOfImage(image);
  env.TOPAS_VERSION = version;
  const ports: k8s.V1ContainerPort[] = [{ name: 'main', containerPort: svc.port }, ...Object.entries(svc.ports).map(([n, p]) => ({ name: portName(n), containerPort: p }))];
  const replicas = change.replicas ?? svc.replicas;
  const probe = readinessProbe(svc);
  const deadlineS = Math.max(30, Math.ceil(svc.ready.timeoutMs / 1000) * 2);
  return {
    secret: { apiVersion: 'v1', kind: 'Secret', metadata: { name: `${name}-env`, namespace: opts.namespace, labels }, type: 'Opaque', stringData: env },
    deployment: {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name, namespace: opts.namespace, labels, annotations: { [ANNOTATIONS.replicas]: String(replicas) } },
      spec: {
        replicas,
        selector: { matchLabels: podSelector(spec.name, opts.runId, svc.name) },
        // zero downtime: a new pod is Ready before an old one goes
        strategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } },
        progressDeadlineSeconds: deadlineS,
        revisionHistoryLimit: 2,
        template: {
          metadata: { labels: { ...labels, [LABELS.version]: labelValue(version) }, annotations: { [ANNOTATIONS.envHash]: envHash(env) } },
          spec: {
            automountServiceAccountToken: false,
            enableServiceLinks: false,
            terminationGracePeriodSeconds: 5,
            containers: [
              {
                name: dnsLabel(svc.name),
                image,
                imagePullPolicy: 'IfNotPresent',
                envFrom: [{ secretRef: { name: `${name}-env` } }],
                ports,
                ...(probe ? { readinessProbe: probe } : {}),
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
        selector: podSelector(spec.name, opts.runId, svc.name),
        // port = targetPort: pods reach the declared port, as on the other backends
        ports: ports.map((p) => ({ name: p.name, port: p.containerPort, targetPort: p.name as unknown as k8s.IntOrString, protocol: 'TCP' })),
      },
    },
  };
}

export interface DatabaseObjects {
  secret: k8s.V1Secret;
  statefulSet: k8s.V1StatefulSet;
  service: k8s.V1Service;
  /** initSQL, applied once by a Job before any dependent starts */
  initJob?: k8s.V1Job;
}

export function databaseObjects(spec: AppSpec, db: DatabaseSpec, opts: RenderOptions): DatabaseObjects {
  const name = objectName(spec.name, db.name, opts.runId);
  const labels = componentLabels(spec.name, opts.runId, db.name, 'database');
  const image = db.image ? imageOf(db.image, db.version) : (opts.postgresImage ?? DEFAULT_POSTGRES_IMAGE);
  const c = db.credentials;
  const secretName = `${name}-credentials`;
  const fromSecret = (env: string, key: string): k8s.V1EnvVar => ({ name: env, valueFrom: { secretKeyRef: { name: secretName, key } } });
  const secret: k8s.V1Secret = {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: secretName, namespace: opts.namespace, labels },
    type: 'Opaque',
    stringData: { POSTGRES_USER: c.user, POSTGRES_PASSWORD: c.password, POSTGRES_DB: c.dbname, ...(db.initSQL ? { INIT_SQL: db.initSQL } : {}) },
  };
  const statefulSet: k8s.V1StatefulSet = {
    apiVersion: 'apps/v1',
    kind: 'StatefulSet',
    metadata: { name, namespace: opts.namespace, labels, annotations: { [ANNOTATIONS.replicas]: '1' } },
    spec: {
      replicas: 1,
      serviceName: name,
      selector: { matchLabels: podSelector(spec.name, opts.runId, db.name) },
      template: {
        metadata: { labels: { ...labels, [LABELS.version]: labelValue(versionOfImage(image)) } },
        spec: {
          automountServiceAccountToken: false,
          enableServiceLinks: false,
          terminationGracePeriodSeconds: 5,
          containers: [
            {
              name: 'postgres',
              image,
              imagePullPolicy: 'IfNotPresent',
              env: [fromSecret('POSTGRES_USER', 'POSTGRES_USER'), fromSecret('POSTGRES_PASSWORD', 'POSTGRES_PASSWORD'), fromSecret('POSTGRES_DB', 'POSTGRES_DB')],
              ports: [{ name: 'postgres', containerPort: POSTGRES_CONTAINER_PORT }],
              // over TCP: the entrypoint's first, socket-only server does not count as ready
              readinessProbe: { exec: { command: ['pg_isready', '-h', '127.0.0.1', '-p', String(POSTGRES_CONTAINER_PORT), '-U', c.user, '-d', c.dbname] }, periodSeconds: 1, timeoutSeconds: 2, failureThreshold: 3 },
            },
          ],
        },
      },
    },
  };
  const service: k8s.V1Service = {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace: opts.namespace, labels },
    spec: { selector: podSelector(spec.name, opts.runId, db.name), ports: [{ name: 'postgres', port: db.port, targetPort: 'postgres' as unknown as k8s.IntOrString, protocol: 'TCP' }] },
  };
  let initJob: k8s.V1Job | undefined;
  if (db.initSQL) {
    const host = serviceHost(spec.name, db.name, opts.runId, opts.namespace);
    initJob = {
      apiVersion: 'batch/v1',
      kind: 'Job',
      metadata: { name: `${name}-init`, namespace: opts.namespace, labels: componentLabels(spec.name, opts.runId, db.name, 'init') },
      spec: {
        backoffLimit: 2,
        template: {
          metadata: { labels: componentLabels(spec.name, opts.runId, `${db.name}-init`, 'init') },
          spec: {
            restartPolicy: 'Never',
            automountServiceAccountToken: false,
            enableServiceLinks: false,
            containers: [
              {
                name: 'init-sql',
                image,
                imagePullPolicy: 'IfNotPresent',
                env: [fromSecret('PGUSER', 'POSTGRES_USER'), fromSecret('PGPASSWORD', 'POSTGRES_PASSWORD'), fromSecret('PGDATABASE', 'POSTGRES_DB'), fromSecret('INIT_SQL', 'INIT_SQL'), { name: 'PGHOST', value: host }, { name: 'PGPORT', value: String(db.port) }],
                // the SQL comes from the Secret, never from the command line
                command: ['sh', '-c', 'for i in $(seq 1 60); do pg_isready -q && break; sleep 1; done; printf "%s" "$INIT_SQL" | psql -v ON_ERROR_STOP=1 --no-psqlrc -q'],
              },
            ],
          },
        },
      },
    };
  }
  return { secret, statefulSet, service, initJob };
}
