/**
 * The normalized app spec (topas.yaml after validation). Both the plain form and
 * the `kind: App` form normalize to this. Durations are milliseconds here.
 * References like `${db.url}` are kept as strings; backends resolve them with
 * `resolveReferences` (src/spec/references.ts) for where the consumer runs.
 */
export interface AppSpec {
  name: string;
  /** Absolute path of the file it came from; relative paths resolve against its folder. */
  file: string;
  dir: string;
  services: ServiceSpec[];
  databases: DatabaseSpec[];
  /**
   * Top-level `env:`: variables for scenarios (`env()` reads --env, then these,
   * then the process). Services have their own `env:`; these are not given to them.
   */
  env?: Record<string, string>;
}

export type ReadinessSpec =
  | { kind: 'http'; path: string; timeoutMs: number; port?: number }
  | { kind: 'tcp'; timeoutMs: number; port?: number }
  | { kind: 'log'; pattern: string; timeoutMs: number }
  | { kind: 'none'; timeoutMs: number };

export interface ServiceSpec {
  name: string;
  /** docker/kubernetes image without tag, e.g. `local/mock-app` */
  image?: string;
  /** tag for the image; visible to the local backend as TOPAS_VERSION too */
  version?: string;
  /** argv for the local backend */
  command?: string[];
  /** working directory for the local backend (relative to the spec's dir) */
  cwd?: string;
  /** main port the service listens on (inside the container; on local, injected as PORT) */
  port: number;
  /** extra named ports, e.g. { grpc: 50051 }; on local injected as PORT_<NAME> */
  ports: Record<string, number>;
  /** `tls: true`: the main port serves TLS (endpoints say https://) */
  tls?: boolean;
  /** names of the `ports` marked `{ port: N, tls: true }` */
  tlsPorts?: string[];
  replicas: number;
  /** values may contain ${...} references */
  env: Record<string, string>;
  ready: ReadinessSpec;
  /** explicit plus implied by references; always validated to exist */
  dependsOn: string[];
}

export interface DatabaseSpec {
  name: string;
  engine: 'postgres';
  image?: string;
  /** image tag (docker/kubernetes), e.g. `16-alpine` */
  version?: string;
  port: number;
  credentials: { user: string; password: string; dbname: string };
  initSQL?: string;
  ready: { timeoutMs: number };
}

/** Fields a reference may ask for: `${name.field}` */
export type ReferenceField = 'url' | 'host' | 'port' | 'user' | 'password' | 'dbname' | 'name';
