import type { EndpointMap, Sut } from '../backends/backend';
import type { AppSpec } from '../spec/app-spec';
import { TopasError } from '../errors';

/** Calls that change what runs where: after them the workers get the new endpoint map. */
const MUTATING = new Set(['sut.applyService', 'sut.waitReady', 'sut.scale', 'sut.stop', 'sut.start', 'sut.restart', 'sut.kill']);

/**
 * Serves the `rpc-call`s of `require("sut")` on the main thread. Arguments
 * arrive exactly as the `Sut` methods take them (durations already in ms).
 */
export function createSutRpcHandler(
  sut: Sut,
  onEndpointsChanged: (map: EndpointMap) => void,
  spec?: AppSpec,
): (runId: string, method: string, args: unknown[]) => Promise<unknown> {
  const s = sut as unknown as Record<string, (...a: unknown[]) => unknown>;
  const methods: Record<string, (args: unknown[]) => unknown> = {
    'sut.services': () => sut.services(),
    'sut.endpoint': ([name, port]) => sut.endpoint(name as string, portName(spec, name as string, port)),
    'sut.applyService': (args) => s.applyService.apply(sut, args),
    'sut.waitReady': (args) => s.waitReady.apply(sut, args),
    'sut.scale': (args) => s.scale.apply(sut, args),
    'sut.stop': (args) => s.stop.apply(sut, args),
    'sut.start': (args) => s.start.apply(sut, args),
    'sut.restart': (args) => s.restart.apply(sut, args),
    'sut.kill': (args) => s.kill.apply(sut, args),
    'sut.logs': (args) => s.logs.apply(sut, args),
    'sut.exec': (args) => s.exec.apply(sut, args),
  };
  return async (_runId, method, args) => {
    const fn = methods[method];
    if (!fn) throw new Error(`unknown sut call "${method}"`);
    try {
      return await fn(args);
    } finally {
      // also after a failed change: part of it may have happened
      // a SUT whose workers run elsewhere (a cluster) gives their view: this machine has none
      if (MUTATING.has(method)) onEndpointsChanged(sut.remoteWorkers ? sut.remoteWorkers.endpointMap() : sut.endpointMap());
    }
  };
}

/**
 * `sut.endpoint(name, 9090)`: a number is the port as the spec writes it (the
 * port inside the container), so it names the main port or one of `ports:`;
 * backends only know port names.
 */
function portName(spec: AppSpec | undefined, name: string, port: unknown): string | undefined {
  if (typeof port !== 'number') return port as string | undefined;
  const svc = spec?.services.find((s) => s.name === name);
  if (!svc) throw new TopasError('SCENARIO_FAILED', `sut.endpoint: ${spec?.databases.some((d) => d.name === name) ? `database ${name} has one port; leave the port out` : `no service named "${name}"`}`);
  if (port === svc.port) return undefined;
  const named = Object.entries(svc.ports).find(([, p]) => p === port);
  if (named) return named[0];
  const all = [`${svc.port} (main)`, ...Object.entries(svc.ports).map(([n, p]) => `${p} (${n})`)];
  throw new TopasError('SCENARIO_FAILED', `service ${name} has no port ${port} (ports: ${all.join(', ')})`);
}
