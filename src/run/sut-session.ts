import { unrunnable } from '../sut/core-backend';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Backend, Sut, SutState } from '../backends/backend';
import { BUILT_IN_BACKENDS, getBackend, pluginBackendNames } from '../backends/registry';
import '../backends/index';
import { TopasError } from '../errors';
import type { AppSpec } from '../spec/app-spec';
import { registerSecretsIn, registerSpecSecrets } from '../spec/secrets';
import { readStateFile, removeStateFile, updateStateFile, writeStateFile } from './run-record';

interface BackendChoice {
  backend: Backend;
  reason: string;
}

/**
 * `--backend auto` (the default): docker when the engine answers and every
 * service has an image, else local when every service has a command.
 * `env`: the environment the backends read their settings from (Io.env).
 */
async function chooseBackend(spec: AppSpec, requested: string, env?: NodeJS.ProcessEnv): Promise<BackendChoice> {
  if (requested !== 'auto') {
    const backend = getBackend(requested);
    // every problem of the spec for this backend at once, with its path, before anything starts
    const problems = backend.validate?.(spec) ?? [];
    if (problems.length) throw unrunnable(requested, spec, problems, requested === 'local' ? 'give every service a `command` to run it locally, or use --backend docker' : undefined);
    const probe = await backend.probe(spec, { env });
    if (!probe.ok) {
      throw new TopasError('BACKEND_UNAVAILABLE', `backend ${requested} cannot run app ${spec.name}: ${probe.reason}`, {
        hint:
          requested === 'docker'
            ? 'start Docker (scripts/ensure-docker.sh) or use --backend local'
            : requested === 'local'
              ? 'give every service a `command` to run it locally, or use --backend docker'
              : `fix what the ${requested} backend reports above, or use --backend docker or local`,
      });
    }
    return { backend, reason: `requested with --backend ${requested}` };
  }
  const reasons: string[] = [];
  // the built-in ones first, then what plugins added
  for (const name of [...BUILT_IN_BACKENDS, ...pluginBackendNames()]) {
    let backend: Backend;
    try {
      backend = getBackend(name);
    } catch {
      continue;
    }
    const probe = await backend.probe(spec, { env });
    if (probe.ok) return { backend, reason: `auto: ${[...reasons, `${name}: ${probe.reason}`].join('; ')}` };
    reasons.push(`${name} not usable: ${probe.reason}`);
  }
  throw new TopasError('BACKEND_UNAVAILABLE', `no backend can run app ${spec.name}`, {
    problems: reasons.map((r) => ({ path: 'backend', message: r })),
    hint: 'start Docker and give services an `image`, or give every service a `command` for the local backend',
  });
}

export interface SutSession {
  sut: Sut;
  /** true when this process started it (and so tears it down) */
  owned: boolean;
  backend: string;
  reason: string;
}

/**
 * Reuse the SUT `topas up` left running for this app, else stand a new one up
 * (after sweeping what crashed runs of the same app left behind).
 */
export async function openSut(opts: {
  spec: AppSpec;
  backend: string;
  runId: string;
  log: (line: string) => void;
  signal?: AbortSignal;
  env?: Record<string, string>;
  /** the environment topas runs in (Io.env), for the backends (StartContext.processEnv) */
  processEnv: NodeJS.ProcessEnv;
  /** route dependents through this process's shaping proxies (StartContext.shapeDependents) */
  shapeDependents?: boolean;
  /** the SUT will outlive this process: dependents' proxies in a detached host (StartContext.proxyHost) */
  proxyHost?: boolean;
}): Promise<SutSession> {
  const { spec } = opts;
  // the spec's secrets now; what the backend makes up (superuser passwords, proxy host tokens) once the SUT exists
  registerSpecSecrets(spec);
  const state = readStateFile(spec.dir);
  if (state && state.app === spec.name && (opts.backend === 'auto' || opts.backend === state.backend)) {
    try {
      const backend = getBackend(state.backend);
      // every change this run makes to the kept SUT reaches state.json as it happens, so `ps`,
      // the next run and `down` see what runs, even if this process dies midway
      const onState = (next: SutState) => void updateStateFile(spec.dir, next);
      const sut = await backend.attach(spec, state, { runId: opts.runId, workDir: '', log: opts.log, signal: opts.signal, env: opts.env, processEnv: opts.processEnv, onState });
      registerSecretsIn(sut.state());
      return { sut, owned: false, backend: state.backend, reason: `reusing the SUT started by \`topas up\` (run ${state.runId})` };
    } catch (err) {
      opts.log(`the SUT recorded in .topas/state.json is gone (${(err as Error).message}); starting a new one`);
      removeStateFile(spec.dir);
    }
  }
  const choice = await chooseBackend(spec, opts.backend, opts.processEnv);
  // what earlier runs left is swept while this one starts: a sweep never takes a run whose owner lives (this one)
  const swept = choice.backend.sweep({ app: spec.name, log: opts.log, env: opts.processEnv }).catch((err: Error) => opts.log(`sweep of earlier runs failed: ${err.message}`));
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), `topas-${spec.name}-`));
  try {
    const sut = await choice.backend
      .start(spec, { runId: opts.runId, workDir, log: opts.log, signal: opts.signal, env: opts.env, processEnv: opts.processEnv, shapeDependents: opts.shapeDependents, proxyHost: opts.proxyHost })
      .finally(() => swept);
    registerSecretsIn(sut.state());
    return { sut, owned: true, backend: choice.backend.name, reason: choice.reason };
  } catch (err) {
    fs.rmSync(workDir, { recursive: true, force: true });
    if (err instanceof TopasError) throw err;
    // a backend's own failure (a plugin's plain Error) is still "could not stand up": exit 3, one line
    throw new TopasError('SUT_START_FAILED', `backend ${choice.backend.name}: ${err instanceof Error ? err.message : String(err)}`, {
      hint: 'run with --debug for the stack',
      cause: err,
    });
  }
}

/**
 * The end of a command that opened a SUT: dispose what this process started
 * (unless --keep, which records it for `topas down`), or just let go of one
 * that `topas up` started. A second Ctrl-C (`forced`) does not wait for a
 * graceful dispose already under way. Resolves false (after logging why) when
 * teardown failed, so the caller can turn a passing run into exit 3.
 */
export async function releaseSut(session: SutSession | undefined, opts: { keep: boolean; stateDir: string; log: (line: string) => void; forced: Promise<void> }): Promise<boolean> {
  if (!session) return true;
  const { sut } = session;
  try {
    if (session.owned && !opts.keep) {
      opts.log('tearing down…');
      await Promise.race([sut.dispose(), opts.forced.then(() => sut.dispose())]);
    } else if (session.owned) {
      writeStateFile(opts.stateDir, sut.state());
      await sut.detach();
      opts.log('kept the SUT running (--keep); `topas down` tears it down');
    } else {
      await sut.detach();
      // what this run left the kept SUT as (a backend without onState records it here)
      updateStateFile(opts.stateDir, sut.state());
    }
    return true;
  } catch (err) {
    opts.log(`teardown failed: ${(err as Error).message}`);
    return false;
  }
}
