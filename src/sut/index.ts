/**
 * The backend-neutral SUT core: what every backend's SUT shares (error table,
 * log format, endpoint choice, reference resolution, heal policy, per-service
 * ordering, the SutDriver seam and the CoreSut over it). It never imports a
 * backend; backends import it.
 */
export { sutErrors, errorMessage } from './sut-errors';
export { DEFAULT_LOG_TAIL, replicaPrefix, mergeReplicaLogs, tailLines } from './log-format';
export { OpQueue } from './op-queue';
export { HEAL_POLICY, healBackoffMs } from './heal-policy';
export { RoundRobin, servingPool, postgresUrl, serviceEntry, databaseEntry, type DbCredentials } from './endpoints';
export { resolveReference, resolveValue, type Address, type AddressView } from './references';
export { startReplicaProxies, startDatabaseProxy, startDependentProxies, databaseProxyKey, type ShapedService, type ReplicaTarget } from './shaping';
export { lifecycleOf, type SutLifecycle } from './lifecycle';
export { CoreSut, type CoreOptions } from './core-sut';
export { CoreBackend, unrunnable } from './core-backend';
export { probeReplica } from './readiness';
export type { SutDriver, DriverBackend, DriverCapabilities, DriverHost, ReplicaHandle, ReplicaRequest, DatabaseHandle, Addresses, Fault, ExecTarget, ExecResult, SavedReplicas, Adopted, RunSnapshot } from './driver';
