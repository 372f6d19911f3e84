import * as fs from 'node:fs';
import type { AppSpec } from '../../spec/app-spec';
import type { StartContext, SutState } from '../backend';
import { TopasError } from '../../errors';
import { connectEngine, ENGINE_HINT, type Engine } from './engine';
import { DockerDriver, type DockerSutData } from './docker-driver';
import { TEMPLATE_BUILD_LABEL } from './postgres-template';
import { removeRun } from './remove-run';
import { KEPT_KIND, LABEL, clearDetached, dockerName, hasLegacyMarker, ownerGone, proxyHostOf, removeProxyHostDir } from './labels';
import { isKeptApp, type SweepOptions } from '../ownership';
import { isAlive, stopGroup, type ProcessRef } from '../local/processes';
import { CoreBackend } from '../../sut/core-backend';
import type { DriverBackend } from '../../sut/driver';

const PROBE_TIMEOUT_MS = 3000;

/** The docker driver's side of the backend: probe, a driver per run, sweep by labels. */
class DockerDrivers implements DriverBackend {
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

  async create(spec: AppSpec, ctx: StartContext): Promise<DockerDriver> {
    // containers keep their own files: the run folder made for us would only stay behind, empty, in TMPDIR
    if (ctx.workDir) removeEmptyDir(ctx.workDir);
    const engine = await connectEngine();
    return new DockerDriver(spec, ctx, engine, dockerName('topas', spec.name, ctx.runId));
  }

  async reopen(spec: AppSpec, state: SutState, ctx: StartContext): Promise<DockerDriver> {
    const engine = await connectEngine();
    const data = state.data as Partial<DockerSutData> | undefined;
    const found = await engine.docker.listContainers({ all: true, filters: { label: [`${LABEL.run}=${state.runId}`] } });
    // a reader (ps, down) takes it as it is: nothing runs, but `down` still ends its proxy host
    if (found.length === 0 && !ctx.readOnly) {
      throw new TopasError('SUT_NOT_UP', `no containers of run ${state.runId} (app ${state.app}) exist any more`, {
        hint: 'start it again with `topas up`',
      });
    }
    return new DockerDriver(spec, ctx, engine, data?.network ?? dockerName('topas', spec.name, state.runId));
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
    // a database template a topas that died was still making (postgres-template.ts): it has no app, only its owner
    for (const c of await engine.docker.listContainers({ all: true, filters: { label: [TEMPLATE_BUILD_LABEL] } })) {
      const run = c.Labels?.[TEMPLATE_BUILD_LABEL];
      if (!run || !c.Labels?.[LABEL.ownerPid] || !ownerGone(c.Labels)) continue;
      await engine.docker.getContainer(c.Id).remove({ force: true, v: true }).catch(() => undefined);
      const what = `docker database template of run ${run} (owner gone): 1 container`;
      opts.log?.(`swept ${what}`);
      removed.push(what);
    }
    return { removed };
  }
}

/**
 * The `docker` backend: every service replica and database is a container
 * (testcontainers' GenericContainer) on a network made for the run, with its
 * name as network alias; scenarios reach them on ports published on 127.0.0.1.
 * The SUT core (src/sut) does the rest.
 */
export class DockerBackend extends CoreBackend {
  constructor() {
    super(new DockerDrivers());
  }
}

function removeEmptyDir(dir: string): void {
  try {
    fs.rmdirSync(dir);
  } catch {
    // gone already, or someone put files there: not ours to remove
  }
}
