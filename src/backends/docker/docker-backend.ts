import * as fs from 'node:fs';
import type { AppSpec } from '../../spec/app-spec';
import type { Backend, StartContext, Sut, SutState } from '../backend';
import { TopasError } from '../../errors';
import { startInDependencyOrder } from '../../spec/dependency-graph';
import { connectEngine, ensureImage, ENGINE_HINT, type Engine } from './engine';
import { DockerSut, removeRun, type DockerSutData } from './docker-sut';
import { LABEL, clearDetached, dockerName, proxyHostDir, removeProxyHostDir, runIsOwned, runLabels } from './labels';
import { ProxyHostClient } from '../../shape/proxy-host';
import { selfCommand } from '../../util/self-command';

const PROBE_TIMEOUT_MS = 3000;

/**
 * The `docker` backend: every service replica and database is a container
 * (testcontainers' GenericContainer) on a network made for the run, with its
 * name as network alias; scenarios reach them on ports published on 127.0.0.1.
 */
export class DockerBackend implements Backend {
  readonly name = 'docker';

  async probe(spec: AppSpec): Promise<{ ok: boolean; reason: string }> {
    const noImage = spec.services.filter((s) => !s.image).map((s) => s.name);
    try {
      await Promise.race([
        connectEngine(),
        new Promise((_, reject) => setTimeout(() => reject(new Error(`no answer within ${PROBE_TIMEOUT_MS}ms`)), PROBE_TIMEOUT_MS).unref()),
      ]);
    } catch (err) {
      return { ok: false, reason: (err as Error).message };
    }
    if (noImage.length > 0) return { ok: false, reason: `services without an image: ${noImage.join(', ')}` };
    return { ok: true, reason: 'the Docker engine answers and every service has an image' };
  }

  async start(spec: AppSpec, ctx: StartContext): Promise<Sut> {
    const engine = await connectEngine();
    const startedAt = new Date().toISOString();
    const network = dockerName('topas', spec.name, ctx.runId);
    const sut = new DockerSut(spec, ctx.runId, engine, ctx, network, startedAt);
    // Every image is checked (and pulled when missing) before anything is made.
    await Promise.all(sut.imageRefs().map((ref) => ensureImage(engine.docker, ref, ctx.log)));
    if (ctx.signal?.aborted) throw new TopasError('INTERRUPTED', 'start interrupted');
    const onAbort = (): void => sut.abortStart();
    ctx.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      await engine.docker.createNetwork({
        Name: network,
        Driver: 'bridge',
        CheckDuplicate: true,
        Labels: { ...runLabels(spec.name, ctx.runId), [LABEL.service]: '' },
      });
      const gateway = ctx.shapeDependents || ctx.proxyHost ? await networkGateway(engine, network, ctx.log) : undefined;
      if (gateway && ctx.proxyHost) {
        // the SUT outlives this process: its dependents' proxies go to a host that lives as long as the run
        const dir = proxyHostDir(ctx.runId);
        fs.mkdirSync(dir, { recursive: true });
        sut.useProxyHost(await ProxyHostClient.start({ watchDir: dir, command: selfCommand() }));
      }
      await sut.startShaping(gateway);
      await startInDependencyOrder(spec, (name) => sut.startComponent(name, ctx.signal), { signal: ctx.signal });
      if (ctx.signal?.aborted) throw new TopasError('INTERRUPTED', 'start interrupted');
    } catch (err) {
      await sut.dispose().catch(() => {});
      throw err;
    } finally {
      ctx.signal?.removeEventListener('abort', onAbort);
    }
    sut.startReconcile();
    return sut;
  }

  async attach(spec: AppSpec, state: SutState, ctx: StartContext): Promise<Sut> {
    const engine = await connectEngine();
    const data = state.data as DockerSutData | undefined;
    const found = await engine.docker.listContainers({ all: true, filters: { label: [`${LABEL.run}=${state.runId}`] } });
    // a reader (ps, down) takes it as it is: nothing runs, but `down` still ends its proxy host
    if (found.length === 0 && !ctx.readOnly) {
      throw new TopasError('SUT_NOT_UP', `no containers of run ${state.runId} (app ${state.app}) exist any more`, {
        hint: 'start it again with `topas up`',
      });
    }
    const network = data?.network ?? dockerName('topas', spec.name, state.runId);
    const sut = new DockerSut(spec, state.runId, engine, ctx, network, state.startedAt, data);
    await sut.adopt();
    // containers started by another process reach its proxy host, if it made one, else each other directly
    const host = data?.proxyHost ? new ProxyHostClient(data.proxyHost) : undefined;
    if (ctx.readOnly) {
      // looks (ps) or tears down (down): no proxies, no healing
      if (host?.alive()) sut.keepProxyHost(host);
      return sut;
    }
    if (host?.alive() && data?.gateway) {
      sut.useProxyHost(host);
      await sut.startShaping(data.gateway);
    } else await sut.startShaping(undefined);
    sut.awaitUnready();
    sut.startReconcile();
    return sut;
  }

  async sweep(opts: { app?: string; all?: boolean; log?: (line: string) => void }): Promise<{ removed: string[] }> {
    let engine: Engine;
    try {
      engine = await connectEngine();
    } catch (err) {
      // nothing can be left behind on an engine that does not run; say so only when asked for everything
      if (opts.all) opts.log?.(`docker: not swept (${(err as Error).message}); hint: ${ENGINE_HINT}`);
      return { removed: [] };
    }
    const filter = { label: [opts.app !== undefined ? `${LABEL.app}=${opts.app}` : LABEL.app] };
    const [containers, networks] = await Promise.all([
      engine.docker.listContainers({ all: true, filters: filter }),
      engine.docker.listNetworks({ filters: filter }),
    ]);
    const runs = new Map<string, { app: string; labels: Record<string, string>; containers: number }>();
    for (const c of containers) {
      const l = c.Labels ?? {};
      const run = l[LABEL.run] ?? '';
      const entry = runs.get(run) ?? { app: l[LABEL.app], labels: l, containers: 0 };
      entry.containers++;
      runs.set(run, entry);
    }
    for (const n of networks) {
      const l = n.Labels ?? {};
      const run = l[LABEL.run] ?? '';
      if (!runs.has(run)) runs.set(run, { app: l[LABEL.app], labels: l, containers: 0 });
    }
    const removed: string[] = [];
    for (const [runId, r] of runs) {
      if (!opts.all && runIsOwned(runId, r.labels)) continue;
      const res = await removeRun(engine, runId);
      clearDetached(runId);
      removeProxyHostDir(runId);
      const what = `docker run ${runId} (app ${r.app}): ${res.containers} container(s), ${res.networks} network(s)`;
      opts.log?.(`swept ${what}`);
      removed.push(what);
    }
    return { removed };
  }
}

/**
 * The host's address on the run's bridge network: containers reach this
 * process's shaping proxies there. Undefined (dependents then talk directly)
 * when the engine reports none, e.g. a network without IPAM config.
 */
async function networkGateway(engine: Engine, network: string, log: (line: string) => void): Promise<string | undefined> {
  const info = (await engine.docker.getNetwork(network).inspect()) as { IPAM?: { Config?: Array<{ Gateway?: string }> } };
  const gateway = info.IPAM?.Config?.find((c) => c.Gateway)?.Gateway;
  if (!gateway) log(`docker: network ${network} reports no gateway; service-to-service traffic is not shaped`);
  return gateway;
}
