import { WASM_FILE_ENV } from '../sea/assets';

/**
 * The process environment of a worker process: what Node and the Lua host
 * need to start, nothing of the user's (a script's variables come in its init
 * message, already chosen: --env, the app spec, then the host's env).
 */
export function workerProcessEnv(host: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of ['PATH', 'TZ', 'TMPDIR', 'HOME', 'SYSTEMROOT', 'LANG', WASM_FILE_ENV]) {
    const v = host[k];
    if (v !== undefined) out[k] = v;
  }
  return out;
}
