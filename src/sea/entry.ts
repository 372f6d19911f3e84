import * as os from 'node:os';
import type { Interfaces } from '@oclif/core';
import type { CommandLoaders } from './sea-config';

// Made by scripts/build-binary.js: package.json, the command manifest, and a
// module of lazy `require`s, one per command (so the bundle holds them all).
declare const __TOPAS_PJSON__: Interfaces.PJSON;
declare const __TOPAS_MANIFEST__: Interfaces.Manifest;

/**
 * oclif's `--version` line (its config.userAgent), without loading oclif:
 * evaluating oclif's modules is most of the executable's start-up time.
 * Undefined where oclif would say something else (WSL reports "wsl").
 */
export function fastVersionLine(argv: string[], pjson: Interfaces.PJSON): string | undefined {
  const flags = new Set(['--version', ...(pjson.oclif.additionalVersionFlags ?? [])]);
  if (!flags.has(argv[0] ?? '') || os.release().toLowerCase().includes('microsoft')) return undefined;
  const arch = os.arch() === 'ia32' ? 'x86' : os.arch();
  return `${pjson.name}/${pjson.version} ${os.platform()}-${arch} node-${process.version}`;
}

let flushOclif: (() => Promise<void>) | undefined;

/** Same contract as runCli (src/cli/main.ts): resolves to the exit code. */
export async function seaMain(argv: string[]): Promise<number> {
  // a worker process of `--spread processes` (the executable started itself): it serves until its coordinator lets it go
  if ((require('./worker-mode') as typeof import('./worker-mode')).runWorkerMode(argv)) return new Promise<number>(() => undefined);
  if (argv[0] === 'proxy-host') {
    // the detached shaping proxy host: no CLI framework, it serves until told to exit
    (require('../shape/proxy-host') as typeof import('../shape/proxy-host')).proxyHostMain(argv.slice(1));
    return new Promise<number>(() => undefined);
  }
  const version = fastVersionLine(argv, __TOPAS_PJSON__);
  if (version) {
    process.stdout.write(`${version}\n`);
    return 0;
  }
  // required here, not imported, so the bundle evaluates them only when needed
  const { Errors, flush, run } = require('@oclif/core') as typeof import('@oclif/core');
  flushOclif = () => flush();
  const { loadSeaConfig } = require('./sea-config') as typeof import('./sea-config');
  const loaders = require('topas-sea:command-loaders') as CommandLoaders;
  try {
    const config = await loadSeaConfig({ pjson: __TOPAS_PJSON__, manifest: __TOPAS_MANIFEST__, loaders });
    await run(argv, config);
    return 0;
  } catch (err) {
    const e = err as Error & { oclif?: { exit?: number } };
    if (e.oclif?.exit !== undefined) {
      if (e.oclif.exit !== 0 && !(err instanceof Errors.ExitError)) process.stderr.write(`error: ${e.message}\n`);
      return e.oclif.exit;
    }
    const { internalLine, stackOf } = require('../errors') as typeof import('../errors');
    process.stderr.write(`error [INTERNAL]: ${argv.includes('--debug') ? stackOf(err) : internalLine(err)}\n`);
    return 1;
  }
}

// The executable's main script: bundled by scripts/build-binary.js, never required by other code.
void seaMain(process.argv.slice(2)).then(async (code) => {
  await flushOclif?.().catch(() => undefined);
  process.exitCode = code;
});
