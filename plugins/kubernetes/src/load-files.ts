import * as fs from 'node:fs';
import * as path from 'node:path';
import { walkRunFiles } from 'topas';

/**
 * The files next to a load script that its VUs may require or read (Lua
 * modules, data files), for worker pods that cannot read the CLI's disk.
 * They travel in a ConfigMap (an object holds about 1 MiB, base64 grows a
 * third), so at most LOAD_FILES_MAX_BYTES; what does not fit stays behind,
 * and the CLI says so. The script itself goes in the init message.
 */
export const LOAD_FILES_MAX_BYTES = 700 * 1024;
const MAX_FILES = 400;
const DEPTH = 4;
const EXTENSIONS = new Set(['.lua', '.json', '.csv', '.txt', '.yaml', '.yml', '.proto', '.sql', '.ndjson', '.html', '.xml', '.pem']);

export interface LoadFiles {
  /** paths relative to the script's folder, '/'-separated */
  files: Array<{ path: string; content: Buffer }>;
  /** files that did not fit */
  left: string[];
}

export function collectLoadFiles(script: string): LoadFiles {
  const root = path.dirname(script);
  const files: LoadFiles['files'] = [];
  const left: string[] = [];
  let bytes = 0;
  for (const f of walkRunFiles(root, DEPTH)) {
    if (path.resolve(f) === path.resolve(script) || !EXTENSIONS.has(path.extname(f))) continue;
    const size = fs.statSync(f).size;
    if (bytes + size > LOAD_FILES_MAX_BYTES || files.length >= MAX_FILES) {
      left.push(path.relative(root, f));
      continue;
    }
    files.push({ path: path.relative(root, f).split(path.sep).join('/'), content: fs.readFileSync(f) });
    bytes += size;
  }
  return { files, left };
}

/** The ConfigMap's data: an index and the contents (binaryData, base64). */
export function filesConfigMapData(files: LoadFiles['files']): { data: Record<string, string>; binaryData: Record<string, string> } {
  return {
    data: { 'index.json': JSON.stringify(files.map((f, i) => ({ key: `f${i}`, path: f.path }))) },
    binaryData: Object.fromEntries(files.map((f, i) => [`f${i}`, f.content.toString('base64')])),
  };
}

/** The files of a ConfigMap made by filesConfigMapData. */
export function filesFromConfigMap(cm: { data?: Record<string, string>; binaryData?: Record<string, string> }): LoadFiles['files'] {
  const index = JSON.parse(cm.data?.['index.json'] ?? '[]') as Array<{ key: string; path: string }>;
  return index.map((e) => ({ path: e.path, content: Buffer.from(cm.binaryData?.[e.key] ?? '', 'base64') }));
}
