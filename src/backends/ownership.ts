import * as fs from 'node:fs';
import * as path from 'node:path';

/**
 * Who owns a run, for sweeps (`topas down [--all]`, the sweep before a start).
 * A run is removed by a sweep only when its owner process is gone (pid AND
 * kernel start time: a recycled pid is not the owner), or when it is a SUT
 * kept by `topas up` / `--keep` for the very app the sweep is for. An app is
 * identified by its name and the absolute path of its spec, because two
 * folders may well use the same name.
 */
export interface SweepOptions {
  /** only runs of this app name (orphans); undefined with `all` */
  app?: string;
  /** orphans of every app, not just `app` */
  all?: boolean;
  /** also remove SUTs kept (detached on purpose) by this app: same name and same spec file */
  kept?: KeptApp;
  log?: (line: string) => void;
  /** the environment topas runs in (Io.env, with what flags such as --kubeconfig add): where a backend reads its settings */
  env?: NodeJS.ProcessEnv;
}

export interface KeptApp {
  app: string;
  specFile: string;
}

/** The spec path as recorded with a run and compared by sweeps: absolute, symlinks resolved. */
export function canonicalSpecPath(file: string): string {
  const abs = path.resolve(file);
  try {
    return fs.realpathSync(abs);
  } catch {
    return abs;
  }
}

/** True when a run recorded as `app` from `specFile` is a SUT of `kept`. A run without a recorded spec never matches. */
export function isKeptApp(kept: KeptApp | undefined, app: string | undefined, specFile: string | undefined): boolean {
  if (!kept || specFile === undefined || specFile === '') return false;
  return app === kept.app && canonicalSpecPath(specFile) === canonicalSpecPath(kept.specFile);
}

let ownPidNamespace: string | null | undefined;

/**
 * This process's pid namespace (`pid:[4026531836]`), undefined off Linux. A pid
 * recorded in another namespace (topas in another container on the same
 * Docker engine) says nothing about liveness here, so such owners are never
 * judged gone.
 */
export function pidNamespace(): string | undefined {
  if (ownPidNamespace === undefined) {
    try {
      ownPidNamespace = fs.readlinkSync('/proc/self/ns/pid');
    } catch {
      ownPidNamespace = null;
    }
  }
  return ownPidNamespace ?? undefined;
}
