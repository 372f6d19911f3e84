import { Errors, flush, run, type Interfaces } from '@oclif/core';
import { loadSeaConfig, type CommandLoaders } from './sea-config';

// Made by scripts/build-binary.js: package.json, the command manifest, and a
// module of lazy `require`s, one per command (so the bundle holds them all).
declare const __TOPAS_PJSON__: Interfaces.PJSON;
declare const __TOPAS_MANIFEST__: Interfaces.Manifest;
// eslint-disable-next-line @typescript-eslint/no-require-imports
const loaders = require('topas-sea:command-loaders') as CommandLoaders;

/** Same contract as runCli (src/cli/main.ts): resolves to the exit code. */
export async function seaMain(argv: string[]): Promise<number> {
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
    process.stderr.write(`error: ${e.stack ?? String(err)}\n`);
    return 1;
  }
}

// The executable's main script: bundled by scripts/build-binary.js, never required by other code.
void seaMain(process.argv.slice(2)).then(async (code) => {
  await flush().catch(() => undefined);
  process.exitCode = code;
});
