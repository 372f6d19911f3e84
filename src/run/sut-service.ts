import Table from 'cli-table3';
import type { ServiceStatus } from '../backends/backend';
import { backendChecks, backendNames, checkBackendName, getBackend } from '../backends/registry';
import '../backends/index';
import { TopasError } from '../errors';
import type { Io } from '../io';
import type { AppSpec } from '../spec/app-spec';
import { loadAppSpec } from '../spec/load-app-spec';
import { createMasker } from '../spec/secrets';
import { Interrupts } from './interrupts';
import { RunRecordStore, readStateFile, removeStateFile, writeStateFile } from './run-record';
import { openSut } from './sut-session';
import { findAppSpecFile } from './targets';
import { checkServiceEnvWithFlags } from '../util/limits';

/** `backend`: the one that will run it (`topas up --backend local`), whose problems join the spec's own. */
async function loadSpec(io: Io, app?: string, backend?: string): Promise<AppSpec> {
  const file = findAppSpecFile({ app, cwd: io.cwd });
  if (!file) throw new TopasError('FILE_NOT_FOUND', 'no topas.yaml here', { hint: 'pass --app path/to/topas.yaml, or run `topas init`' });
  return loadAppSpec(file, { env: io.env, cwd: io.cwd, backendChecks: backend === undefined ? undefined : backendChecks(backend) });
}

export interface UpResult {
  app: string;
  backend: string;
  reason: string;
  runId: string;
  alreadyUp: boolean;
  services: ServiceStatus[];
}

/** `topas up`: stand up (or find up) the SUT and leave it running, recorded in .topas/state.json. */
export async function upApp(opts: { io: Io; app?: string; backend: string; env: Record<string, string> }): Promise<UpResult> {
  const spec = await loadSpec(opts.io, opts.app, opts.backend);
  checkServiceEnvWithFlags(spec.services, opts.env);
  const mask = createMasker(spec);
  const log = (line: string) => opts.io.stderr.write(`topas: ${mask(line)}\n`);
  const existing = readStateFile(spec.dir);
  const runId = existing?.runId ?? new RunRecordStore(spec.dir).createRunId();
  const interrupts = new Interrupts(opts.io);
  try {
    const session = await openSut({ spec, backend: opts.backend, runId, log, signal: interrupts.signal, env: opts.env, processEnv: opts.io.env, proxyHost: true });
    log(`app ${spec.name} is up on backend ${session.backend} (${session.reason})`);
    try {
      if (interrupts.interrupted) throw new TopasError('INTERRUPTED', 'interrupted while standing up');
      const services = await session.sut.services();
      writeStateFile(spec.dir, session.sut.state());
      await session.sut.detach();
      return { app: spec.name, backend: session.backend, reason: session.reason, runId: session.sut.runId, alreadyUp: !session.owned, services };
    } catch (err) {
      if (session.owned) await session.sut.dispose().catch(() => undefined);
      throw err;
    }
  } catch (err) {
    if (interrupts.interrupted) throw new TopasError('INTERRUPTED', 'interrupted while standing up; everything started was torn down', { cause: err });
    throw err;
  } finally {
    interrupts.dispose();
  }
}

/**
 * `topas down [--all]`. Plain: the SUT recorded in .topas/state.json, the SUTs
 * kept for this app (same name and spec file), and what runs of this app whose
 * owner process is gone left behind. `--all`: the same, plus what runs of any
 * app whose owner process is gone left behind. Never a run whose owner lives,
 * never a SUT another app (or the same name in another folder) kept.
 */
export async function downApp(opts: { io: Io; app?: string; all: boolean; backend?: string }): Promise<{ removed: string[]; tornDown?: string }> {
  const log = (line: string) => opts.io.stderr.write(`topas: ${line}\n`);
  const removed: string[] = [];
  let tornDown: string | undefined;
  const file = findAppSpecFile({ app: opts.app, cwd: opts.io.cwd });
  if (!file && !opts.all) throw new TopasError('FILE_NOT_FOUND', 'no topas.yaml here', { hint: 'pass --app path/to/topas.yaml, or `topas down --all` to sweep what crashed topas runs left behind' });
  let spec: AppSpec | undefined;
  if (file) {
    try {
      spec = await loadAppSpec(file, { env: opts.io.env, cwd: opts.io.cwd });
    } catch (err) {
      // --all still sweeps the leftovers of crashed runs; this app's kept SUT stays, as its spec cannot be read
      if (!opts.all) throw err;
      log(`${file}: not read (${(err as Error).message}); its kept SUT, if any, is left alone`);
    }
  }
  if (opts.backend !== undefined && opts.backend !== 'auto') checkBackendName(opts.backend);
  const only = opts.backend !== undefined && opts.backend !== 'auto' ? opts.backend : undefined;
  let backends = only ? [only] : backendNames();
  if (spec) {
    const state = readStateFile(spec.dir);
    if (state) {
      try {
        const sut = await getBackend(state.backend).attach(spec, state, { runId: state.runId, workDir: '', log, readOnly: true, processEnv: opts.io.env });
        await sut.dispose();
        tornDown = `${spec.name} (${state.backend}, run ${state.runId})`;
      } catch (err) {
        log(`the recorded SUT could not be reopened (${(err as Error).message}); sweeping instead`);
      }
      removeStateFile(spec.dir);
      // a plain down need not wake a backend the app did not use
      if (!opts.all && !only) backends = [state.backend];
    }
  }
  const kept = spec ? { app: spec.name, specFile: spec.file } : undefined;
  for (const name of backends) {
    try {
      const r = await getBackend(name).sweep({ app: spec?.name, all: opts.all, kept, log, env: opts.io.env });
      removed.push(...r.removed);
    } catch (err) {
      log(`${name}: sweep skipped (${(err as Error).message})`);
    }
  }
  return { removed, tornDown };
}

/** `topas ps` */
export async function psApp(opts: { io: Io; app?: string }): Promise<{ app: string; backend?: string; runId?: string; services: ServiceStatus[] }> {
  const spec = await loadSpec(opts.io, opts.app);
  const state = readStateFile(spec.dir);
  if (!state) return { app: spec.name, services: [] };
  const log = (line: string) => opts.io.stderr.write(`topas: ${line}\n`);
  // looks only: probes what runs, writes nothing (a run holding the SUT records its own changes)
  const sut = await getBackend(state.backend).attach(spec, state, { runId: state.runId, workDir: '', log, readOnly: true, processEnv: opts.io.env });
  try {
    return { app: spec.name, backend: state.backend, runId: state.runId, services: await sut.services() };
  } finally {
    await sut.detach();
  }
}

export function servicesTable(services: ServiceStatus[], mask: (s: string) => string = (s) => s): string {
  const table = new Table({ head: ['NAME', 'KIND', 'REPLICAS', 'READY', 'VERSION', 'ENDPOINTS'], style: { head: [], border: [] } });
  for (const s of services) {
    const extra = Object.entries(s.extraEndpoints ?? {}).map(([k, v]) => `${k}: ${v.join(', ')}`);
    table.push([s.name, s.kind, String(s.replicas), s.ready ? 'yes' : 'no', s.version ?? '', mask([...s.endpoints, ...extra].join('\n'))]);
  }
  return table.toString();
}
