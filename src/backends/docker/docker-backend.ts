import * as fs from 'node:fs';
import type { AppSpec } from '../../spec/app-spec';
import type { Backend, StartContext, Sut, SutState } from '../backend';
import { TopasError } from '../../errors';
import { startInDependencyOrder } from '../../spec/dependency-graph';
import { connectEngine, ensureImage, ENGINE_HINT, type Engine } from './engine';
import { DockerSut, removeRun, type DockerSutData } from './docker-sut';
import { KEPT_KIND, LABEL, clearDetached, dockerName, hasLegacyMarker, ownerGone, proxyHostDir, proxyHostOf, removeProxyHostDir, runLabels } from './labels';
import { isKeptApp, type SweepOptions } from '../ownership';
import { isAlive, stopGroup, type ProcessRef } from '../local/processes';
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
    // containers keep their own files: the run folder made for us would only stay behind, empty, in TMPDIR
    if (ctx.workDir) removeEmptyDir(ctx.workDir);
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
        Labels: { ...runLabels(spec.name, ctx.runId, spec.file), [LABEL.service]: '' },
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

  /**
   * Every object (container, network, kept marker) is grouped by its run. A run
   * is removed when every owner that labelled it is gone and it was not kept,
   * or when it is a SUT kept for `opts.kept` (same app name and spec file).
   */
  async sweep(opts: SweepOptions): Promise<{ removed: string[] }> {
    let engine: Engine;
    try {
      engine = await connectEngine();
    } catch (err) {
      // nothing can be left behind on an engine that does not run; say so only when asked for everything
      if (opts.all) opts.log?.(`docker: not swept (${(err as Error).message}); hint: ${ENGINE_HINT}`);
      return { removed: [] };
    }
    const filter = { label: [!opts.all && opts.app !== undefined ? `${LABEL.app}=${opts.app}` : LABEL.app] };
    const keptFilter = opts.kept ? { label: [`${LABEL.app}=${opts.kept.app}`] } : undefined;
    const [containers, networks, volumes, keptContainers] = await Promise.all([
      engine.docker.listContainers({ all: true, filters: filter }),
      engine.docker.listNetworks({ filters: filter }),
      engine.docker.listVolumes({ filters: { label: [LABEL.app, `${LABEL.kind}=${KEPT_KIND}`] } }),
      keptFilter ? engine.docker.listContainers({ all: true, filters: keptFilter }) : Promise.resolve([]),
    ]);
    interface RunObjects {
      app: string;
      spec?: string;
      containers: number;
      /** some owner that labelled the run still lives (or cannot be judged from here) */
      owned: boolean;
      proxyHosts: ProcessRef[];
    }
    const runs = new Map<string, RunObjects>();
    const add = (labels: Record<string, string> | undefined, container: boolean): void => {
      const l = labels ?? {};
      const run = l[LABEL.run] ?? '';
      const entry = runs.get(run) ?? { app: l[LABEL.app], spec: l[LABEL.spec], containers: 0, owned: false, proxyHosts: [] };
      if (container) entry.containers++;
      entry.spec ??= l[LABEL.spec];
      if (!ownerGone(l)) entry.owned = true;
      const host = proxyHostOf(l);
      if (host && !entry.proxyHosts.some((h) => h.pid === host.pid)) entry.proxyHosts.push(host);
      runs.set(run, entry);
    };
    const seen = new Set<string>();
    for (const c of [...containers, ...keptContainers]) {
      if (seen.has(c.Id)) continue;
      seen.add(c.Id);
      add(c.Labels, true);
    }
    for (const n of networks) add(n.Labels, false);
    const kept = new Set((volumes.Volumes ?? []).map((v) => v.Labels?.[LABEL.run] ?? ''));
    // a kept marker whose containers are gone is still removed with its app
    for (const v of volumes.Volumes ?? []) if (!runs.has(v.Labels?.[LABEL.run] ?? '')) add(v.Labels, false);
    const removed: string[] = [];
    for (const [runId, r] of runs) {
      let reason: string;
      if (kept.has(runId) || hasLegacyMarker(runId)) {
        if (!isKeptApp(opts.kept, r.app, r.spec)) continue;
        reason = 'kept SUT of this app';
      } else {
        if (r.owned) continue;
        if (opts.app === undefined || r.app !== opts.app) {
          if (!opts.all) continue;
          // labelled by a topas that kept its "kept" marker in its own TMPDIR: a kept SUT cannot be told from a crash here
          if (r.spec === undefined) continue;
        }
        reason = 'owner gone';
      }
      const res = await removeRun(engine, runId);
      await clearDetached(engine.docker, runId).catch((err: Error) => opts.log?.(`docker: kept marker of run ${runId} not removed: ${err.message}`));
      const hosts = r.proxyHosts.filter((h) => isAlive(h));
      await Promise.all(hosts.map((h) => stopGroup(h, 2000)));
      removeProxyHostDir(runId);
      const what = `docker run ${runId} (app ${r.app}, ${reason}): ${res.containers} container(s), ${res.networks} network(s)${hosts.length ? ', proxy host' : ''}`;
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

function removeEmptyDir(dir: string): void {
  try {
    fs.rmdirSync(dir);
  } catch {
    // gone already, or someone put files there: not ours to remove
  }
}
