import { TopasError } from '../errors';

/**
 * The error table of every SUT, whatever the backend: the same mistake gives
 * the same code and the same text on local, docker and plugin backends.
 * A scenario that names what the app does not have failed (exit 1); a SUT
 * with nothing running where something should is not up (exit 3).
 */
export const sutErrors = {
  /** `sut.endpoint("nope")`, `sut.kill("nope")`, `sut.logs("nope")`... */
  unknownTarget(app: string, name: string, known: string[]): TopasError {
    return new TopasError('SCENARIO_FAILED', `no service or database named "${name}" in app ${app}`, { hint: `known: ${known.join(', ') || 'none'}` });
  },
  /** `sut.endpoint("api", "nope")` */
  unknownPort(service: string, port: string, known: string[]): TopasError {
    return new TopasError('SCENARIO_FAILED', `service ${service} has no port named "${port}"`, { hint: `named ports: ${known.join(', ') || 'none'}` });
  },
  /** an endpoint (or a kill) of a service none of whose replicas runs */
  noRunningReplica(service: string, replica?: number, running: number[] = []): TopasError {
    if (replica === undefined) return new TopasError('SUT_NOT_UP', `service ${service} has no running replica`);
    return new TopasError('SUT_NOT_UP', `service ${service} has no running replica ${replica} (running: ${running.join(', ') || 'none'})`);
  },
  /** `sut.scale("api", -1)`, `apply_service{replicas=1.5}` */
  badReplicaCount(op: string, service: string, replicas: unknown): TopasError {
    return new TopasError('SCENARIO_FAILED', `${op} ${service}: replicas must be a whole number >= 0, got ${String(replicas)}`);
  },
  /** an operation this backend cannot do (`stop` of one database in local's shared PostgreSQL) */
  unsupported(backend: string, what: string, why: string): TopasError {
    return new TopasError('SCENARIO_FAILED', `${what}: not supported on the ${backend} backend (${why})`);
  },
  emptyExec(name: string): TopasError {
    return new TopasError('SCENARIO_FAILED', `exec ${name}: empty command`);
  },
  nothingToExec(name: string): TopasError {
    return new TopasError('SUT_NOT_UP', `exec ${name}: nothing is running`);
  },
  databaseNotRunning(name: string): TopasError {
    return new TopasError('SUT_NOT_UP', `database ${name} is not running`);
  },
  /** any operation after dispose */
  disposed(backend: string, runId: string): TopasError {
    return new TopasError('SUT_NOT_UP', `${backend} run ${runId} is shut down`);
  },
  /** `${name.field}` that names nothing (the spec loader catches these first; a plugin's spec may not) */
  unknownReference(name: string, field: string, why: string): TopasError {
    return new TopasError('INVALID_APP_SPEC', `reference \${${name}.${field}}: ${why}`);
  },
  /** `${api.url}` while no replica of api runs */
  referenceNotRunning(name: string, field: string): TopasError {
    return new TopasError('SUT_START_FAILED', `reference \${${name}.${field}}: service ${name} has no running replica`);
  },
};

/** A thrown value as one line of text. */
export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
