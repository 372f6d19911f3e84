import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { TopasError } from '../errors';
import type { Io } from '../io';
import { checkLuaSyntax } from '../lua/syntax-check';
import { harToLua } from './har-import';
import { postmanToLua } from './postman-import';

export const IMPORT_FORMATS = ['har', 'postman'] as const;
export type ImportFormat = (typeof IMPORT_FORMATS)[number];

export interface ImportOptions {
  io: Io;
  format: ImportFormat;
  file: string;
  out?: string;
  includeHosts: string[];
  keepStatic: boolean;
  environment?: string;
  folder?: string;
}

/** `topas import`: writes the scenario (or prints it), after topas' own Lua syntax check. */
export async function runImport(opts: ImportOptions): Promise<{ file?: string; dropped: string[] }> {
  const { io } = opts;
  const abs = path.resolve(io.cwd, opts.file);
  if (!fs.existsSync(abs)) throw new TopasError('FILE_NOT_FOUND', `${opts.file} not found`);
  if (opts.format !== 'postman' && (opts.environment !== undefined || opts.folder !== undefined)) throw new TopasError('INVALID_FLAGS', '--environment and --folder apply to `topas import postman`');
  if (opts.format !== 'har' && (opts.includeHosts.length || opts.keepStatic)) throw new TopasError('INVALID_FLAGS', '--include-host and --keep-static apply to `topas import har`');
  const result =
    opts.format === 'har'
      ? harToLua({ file: abs, includeHosts: opts.includeHosts, keepStatic: opts.keepStatic })
      : postmanToLua({ collection: abs, environment: opts.environment ? path.resolve(io.cwd, opts.environment) : undefined, folder: opts.folder });
  const target = opts.out ? path.resolve(io.cwd, opts.out) : path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'topas-import-')), 'scenario.lua');
  fs.mkdirSync(path.dirname(target), { recursive: true });
  fs.writeFileSync(target, result.source);
  const problems = await checkLuaSyntax(target, path.dirname(target));
  if (!opts.out) fs.rmSync(path.dirname(target), { recursive: true, force: true });
  if (problems.length) throw new TopasError('INTERNAL', 'the generated scenario does not compile (a topas bug: please report it with the input file)', { problems });
  if (!opts.out) io.stdout.write(result.source);
  if (result.dropped.length) io.stderr.write(`topas: left out ${result.dropped.length} item(s):\n${result.dropped.map((d) => `  ${d}\n`).join('')}`);
  if (opts.out) io.stderr.write(`topas: wrote ${path.relative(io.cwd, target) || target}\n`);
  return { file: opts.out ? target : undefined, dropped: result.dropped };
}
