import * as path from 'node:path';
import { Flags } from '@oclif/core';
import { TopasError } from '../errors';
import type { Io } from '../io';
import { readEnvFiles } from './env-file';
import { parseDurationMs } from '../util/duration';
import { LIMITS, envSizeProblems, formatBytes, formatLimitDuration } from '../util/limits';

export const appFlag = Flags.string({ description: 'path to the app spec (default: topas.yaml here or next to the scenarios)', helpValue: 'topas.yaml' });
/**
 * --backend's help names the backends installed: the built-in ones, plus what
 * plugins registered (src/cli/init-hook.ts rewrites it once they have).
 */
export function backendFlagHelp(pluginBackends: readonly string[] = []): { description: string; helpValue: string } {
  const then = pluginBackends.length ? `, then ${pluginBackends.join(', ')}` : '';
  return {
    description: `where to stand the SUT up: auto (docker when the engine answers and every service has an image, else local${then}), ${['local', 'docker', ...pluginBackends].join(', ')}`,
    helpValue: ['auto', 'local', 'docker', ...pluginBackends].join('|'),
  };
}

export const backendFlag = Flags.string({ ...backendFlagHelp(), default: 'auto' });
export const envFlag = Flags.string({
  description: `variable for scenarios and services (repeatable; at most ${formatBytes(LIMITS.envEntryBytes)} each, ${formatBytes(LIMITS.envTotalBytes)} in all)`,
  multiple: true,
  helpValue: 'K=V',
  default: [],
});

export const envFileFlag = Flags.string({
  description: 'read variables from a dotenv file (KEY=value lines, # comments, quotes, `export` prefix; repeatable, later files win); --env wins over it',
  multiple: true,
  helpValue: 'FILE',
  default: [],
});

/** `--env` over `--env-file` (read relative to cwd). */
export function parseEnvFlags(values: string[], envFiles: string[] = [], cwd = process.cwd()): Record<string, string> {
  const out: Record<string, string> = envFiles.length ? readEnvFiles(envFiles, cwd) : {};
  const problems = [];
  for (const v of values) {
    const i = v.indexOf('=');
    if (i <= 0) problems.push({ path: '--env', message: `expected K=V, got ${JSON.stringify(v.length > 60 ? `${v.slice(0, 60)}…` : v)}` });
    else out[v.slice(0, i)] = v.slice(i + 1);
  }
  for (const p of envSizeProblems(out)) problems.push({ path: p.name === undefined ? '--env' : `--env ${p.name}`, message: p.message });
  if (problems.length) throw new TopasError('INVALID_FLAGS', 'invalid --env', { problems });
  return out;
}

export function parseDurationFlag(value: string, flag: string): number {
  let ms: number;
  try {
    ms = parseDurationMs(value, flag);
  } catch (err) {
    throw new TopasError('INVALID_FLAGS', (err as Error).message, { problems: [{ path: flag, message: `expected a duration like "30s" or "2m", got ${JSON.stringify(value)}` }] });
  }
  // 0 would mean "no limit" further down: a scenario that never ends must still be stopped
  if (ms <= 0) {
    throw new TopasError('INVALID_FLAGS', `${flag}: expected a duration above 0, got "${value}"`, { problems: [{ path: flag, message: 'above 0' }] });
  }
  if (ms > LIMITS.durationMs) {
    throw new TopasError('INVALID_FLAGS', `${flag}: expected at most ${formatLimitDuration(LIMITS.durationMs)}, got "${value}"`, { problems: [{ path: flag, message: `at most ${formatLimitDuration(LIMITS.durationMs)}` }] });
  }
  return ms;
}

/**
 * Where a cluster backend (the kubernetes plugin) works. Core knows nothing of
 * clusters: it hands these to the backend as the environment variables the
 * plugin reads (TOPAS_KUBECONFIG, TOPAS_KUBE_CONTEXT, TOPAS_KUBE_NAMESPACE),
 * in the command's Io.env (StartContext.processEnv, SweepOptions.env, probe's env).
 */
export const clusterFlags = {
  kubeconfig: Flags.string({ description: 'kubeconfig for a cluster backend (a plugin; default: KUBECONFIG, ~/.kube/config)', helpValue: 'FILE', helpGroup: 'CLUSTER' }),
  context: Flags.string({ description: 'kubeconfig context for a cluster backend (default: the current one)', helpValue: 'NAME', helpGroup: 'CLUSTER' }),
  namespace: Flags.string({ description: "namespace for a cluster backend (default: the context's, else default)", helpValue: 'NAME', helpGroup: 'CLUSTER' }),
};

const CLUSTER_ENV = { kubeconfig: 'TOPAS_KUBECONFIG', context: 'TOPAS_KUBE_CONTEXT', namespace: 'TOPAS_KUBE_NAMESPACE' } as const;

/**
 * The command's Io with the cluster flags given added to its env, as the
 * plugin's variables (a relative --kubeconfig resolved against Io.cwd). The
 * process's own environment is left alone: the backends read the Io's.
 */
export function withClusterFlags(io: Io, flags: { kubeconfig?: string; context?: string; namespace?: string }): Io {
  const added: Record<string, string> = {};
  for (const [flag, name] of Object.entries(CLUSTER_ENV) as Array<[keyof typeof CLUSTER_ENV, string]>) {
    const value = flags[flag];
    if (value !== undefined) added[name] = flag === 'kubeconfig' ? path.resolve(io.cwd, value) : value;
  }
  if (Object.keys(added).length === 0) return io;
  const env = { ...io.env, ...added };
  return {
    stdout: io.stdout,
    stderr: io.stderr,
    env,
    get cwd() {
      return io.cwd;
    },
    now: () => io.now(),
    onSignal: (handler) => io.onSignal(handler),
  };
}
