import * as path from 'node:path';
import { run, flush, Errors } from '@oclif/core';
import { setCliIo } from './cli-io';
import type { Io } from '../io';
import { internalLine, stackOf } from '../errors';

/** Repo/package root: holds package.json with the oclif config. */
export const PACKAGE_ROOT = path.resolve(__dirname, '..', '..', '..');

/**
 * Runs the CLI and resolves to its exit code instead of exiting, so tests can
 * run it in-process with an injected Io.
 */
export async function runCli(argv: string[], io?: Io): Promise<number> {
  if (io) setCliIo(io);
  try {
    await run(argv, PACKAGE_ROOT);
    return 0;
  } catch (err) {
    const e = err as Error & { oclif?: { exit?: number } };
    if (e.oclif?.exit !== undefined) {
      if (e.oclif.exit !== 0 && !(err instanceof Errors.ExitError)) {
        (io?.stderr ?? process.stderr).write(`error: ${e.message}\n`);
      }
      return e.oclif.exit;
    }
    // reached only when oclif itself failed before a command could render the error
    (io?.stderr ?? process.stderr).write(`error [INTERNAL]: ${argv.includes('--debug') ? stackOf(err) : internalLine(err)}\n`);
    return 1;
  } finally {
    if (io) setCliIo(undefined);
  }
}

/** bin/run.js entry. */
export async function main(argv: string[]): Promise<void> {
  const code = await runCli(argv);
  await flush().catch(() => undefined);
  process.exitCode = code;
}
