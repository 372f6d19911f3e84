import { Errors, flush, run } from '@oclif/core';
import { loadSeaConfig } from './sea-config';

/** Same contract as runCli (src/cli/main.ts): resolves to the exit code. */
export async function seaMain(argv: string[]): Promise<number> {
  try {
    const config = await loadSeaConfig();
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
