import * as path from 'node:path';

/**
 * Worker processes of the single executable. A SEA always runs its own main
 * script, so it cannot fork a worker's .js file: it starts itself again,
 * `<binary> __topas-worker <name>`, and the main script (src/sea/entry.ts)
 * runs the named worker, whose code the bundle holds. Outside the executable
 * nothing here is used (processes fork the compiled worker file).
 */
export const WORKER_MODE_ARG = '__topas-worker';

/**
 * The workers a process can host, by the file name of their entry. Static
 * requires, so esbuild bundles them into the executable's main script; each
 * is evaluated only when its worker starts (requiring it connects to the
 * parent and serves until the coordinator lets it go).
 */
const WORKERS: Record<string, () => unknown> = {
  'load-worker': () => require('../load/load-worker'),
  'scenario-worker': () => require('../run/scenario-worker'),
};

/** `fork` arguments that start `entry`'s worker from the executable: [module argument, args]. */
export function workerModeArgs(entry: string): [string, string[]] {
  const name = path.basename(entry, '.js');
  if (!(name in WORKERS)) throw new Error(`the single executable holds no worker named ${name}`);
  return [WORKER_MODE_ARG, [name]];
}

/** `argv` (after the executable) when the executable was started as a worker: runs it and returns true. */
export function runWorkerMode(argv: readonly string[]): boolean {
  if (argv[0] !== WORKER_MODE_ARG) return false;
  const start = WORKERS[argv[1] ?? ''];
  if (!start) {
    process.stderr.write(`topas: no worker named ${argv[1] ?? '(none)'}\n`);
    process.exit(2);
  }
  start();
  return true;
}
