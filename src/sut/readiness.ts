import { TopasError } from '../errors';
import type { ServiceSpec } from '../spec/app-spec';
import { waitForHttp, waitForLog, waitForTcp, type ProbeOptions } from '../backends/readiness';
import type { Addresses } from './driver';

/** The readiness probe of `ready:` against a replica's host addresses; `onceMs`: one attempt of at most that long. */
export async function probeReplica(svc: ServiceSpec, addr: Addresses, opts: ProbeOptions & { onceMs?: number; logs?: () => string }): Promise<void> {
  const ready = svc.ready;
  const once = opts.onceMs;
  // a deadline already passed after the first attempt: poll makes exactly one
  const base: ProbeOptions = { ...opts, timeoutMs: once !== undefined ? 1 : ready.timeoutMs };
  let target = addr.main;
  let tls = svc.tls === true;
  if (ready.kind === 'http' || ready.kind === 'tcp') {
    // a readiness port is written as the declared (container) port: map it to this replica's address of that port
    const named = Object.entries(svc.ports).find(([, p]) => p === ready.port && ready.port !== svc.port);
    if (named) {
      target = addr.ports[named[0]];
      tls = svc.tlsPorts?.includes(named[0]) ?? false;
    }
  }
  if ((ready.kind === 'http' || ready.kind === 'tcp') && !target) throw new TopasError('SUT_START_FAILED', `${opts.label}: its port is not reachable from this host`);
  switch (ready.kind) {
    case 'http':
      await waitForHttp(`${tls ? 'https' : 'http'}://${target!.host}:${target!.port}`, { ...base, path: ready.path, ...(once !== undefined ? { attemptTimeoutMs: once } : {}) });
      break;
    case 'tcp':
      await waitForTcp(target!.host, target!.port, once !== undefined ? { ...base, timeoutMs: once } : base);
      break;
    case 'log':
      await waitForLog(opts.logs ?? (() => ''), ready.pattern, base);
      break;
    case 'none': {
      const gone = opts.liveness?.();
      if (gone) throw new TopasError('SUT_START_FAILED', `${opts.label}: ${gone}`);
      break;
    }
  }
}
