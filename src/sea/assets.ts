import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/**
 * Files the single executable (Node SEA) carries as assets, and where they
 * are on disk at run time. Outside the executable every function here falls
 * back to the normal install layout, so callers use them unconditionally.
 *
 * Asset names (scripts/build-binary.js writes them):
 *   manifest.json        {buildId}: names the extraction folder
 *   glue.wasm            wasmoon's Lua VM
 *   workers/<name>.js    bundled worker-thread scripts (scenario-worker.js, load-worker.js)
 *   lua-types.json       {file name: text} of lua-types/ for `topas init`
 */
export const SEA_ASSETS = {
  manifest: 'manifest.json',
  wasm: 'glue.wasm',
  /** + the worker's file name */
  workerPrefix: 'workers/',
  luaTypes: 'lua-types.json',
} as const;

/** Set by the main thread once glue.wasm is on disk; worker threads inherit it. */
export const WASM_FILE_ENV = 'TOPAS_SEA_WASM_FILE';

type SeaModule = { isSea(): boolean; getAsset(key: string): ArrayBuffer; getAsset(key: string, encoding: string): string };

let seaModule: SeaModule | null | undefined;

function sea(): SeaModule | null {
  if (seaModule === undefined) {
    try {
      // node:sea exists from Node 20.12; older Node is never a topas SEA
      seaModule = require('node:sea') as SeaModule;
    } catch {
      seaModule = null;
    }
  }
  return seaModule;
}

/** True inside the single executable (main thread). */
export function isSea(): boolean {
  try {
    return sea()?.isSea() ?? false;
  } catch {
    return false;
  }
}

function assetText(key: string): string {
  return sea()!.getAsset(key, 'utf8');
}

let extractDir: string | undefined;

/**
 * One folder per build and user under the temp dir; files are written once
 * (atomically) and reused by later runs of the same build.
 */
function extractionDir(): string {
  if (!extractDir) {
    const { buildId } = JSON.parse(assetText(SEA_ASSETS.manifest)) as { buildId: string };
    const uid = typeof process.getuid === 'function' ? process.getuid() : 'u';
    const shared = path.join(os.tmpdir(), `topas-sea-${uid}-${buildId}`);
    fs.mkdirSync(shared, { recursive: true, mode: 0o700 });
    const st = fs.statSync(shared);
    // code is loaded from here: never from a folder someone else could have planted
    const ours = typeof process.getuid !== 'function' || (st.uid === process.getuid() && (st.mode & 0o022) === 0);
    extractDir = ours ? shared : fs.mkdtempSync(path.join(os.tmpdir(), 'topas-sea-'));
  }
  return extractDir;
}

function extractAsset(key: string, fileName: string): string {
  const file = path.join(extractionDir(), fileName);
  const data = Buffer.from(sea()!.getAsset(key));
  try {
    if (fs.statSync(file).size === data.length) return file;
  } catch {
    /* not there yet */
  }
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, data, { mode: 0o600 });
  fs.renameSync(tmp, file);
  return file;
}

/**
 * Where wasmoon must load its glue.wasm from: pass it as the first argument of
 * `new LuaFactory(getWasmLocation())`. Inside the executable this is a file
 * extracted from the binary (worker threads get its path through the
 * environment); outside it is undefined, which makes wasmoon use the
 * glue.wasm next to its own index.js (node_modules/wasmoon/dist).
 */
export function getWasmLocation(): string | undefined {
  const fromEnv = process.env[WASM_FILE_ENV];
  if (fromEnv && fs.existsSync(fromEnv)) return fromEnv;
  if (!isSea()) return undefined;
  const file = extractAsset(SEA_ASSETS.wasm, 'glue.wasm');
  process.env[WASM_FILE_ENV] = file;
  return file;
}

/**
 * The file to hand to `new Worker(...)`: `defaultPath` (a compiled worker
 * script such as dist/src/run/scenario-worker.js) normally; inside the
 * executable the bundled copy of the worker with that file name, extracted
 * from it. Also makes sure glue.wasm is on disk before any worker asks for it.
 */
export function getWorkerPath(defaultPath: string): string {
  if (!isSea()) return defaultPath;
  getWasmLocation();
  const name = path.basename(defaultPath);
  return extractAsset(`${SEA_ASSETS.workerPrefix}${name}`, name);
}

/** lua-types/ files carried by the executable (name -> text); undefined outside it. */
export function getEmbeddedLuaTypes(): Record<string, string> | undefined {
  if (!isSea()) return undefined;
  return JSON.parse(assetText(SEA_ASSETS.luaTypes)) as Record<string, string>;
}
