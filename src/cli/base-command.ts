import { Command, Flags } from '@oclif/core';
import { cliIo } from './cli-io';
import { registerPluginBackends } from '../backends/plugin-backends';
import { EXIT_CODES, TopasError } from '../errors';
import type { Io } from '../io';
import { maskSecrets } from '../spec/secrets';

/**
 * Every topas command: knows its Io, renders TopasErrors with their problems
 * and hint, and turns them into the one exit-code table.
 */
export abstract class BaseCommand extends Command {
  static override baseFlags = {
    json: Flags.boolean({ description: 'print machine-readable JSON on stdout', default: false }),
  };

  protected override async init(): Promise<void> {
    await super.init();
    await registerPluginBackends(this.config);
  }

  protected get io(): Io {
    return cliIo();
  }

  protected out(text: string): void {
    this.io.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
  }

  protected err(text: string): void {
    this.io.stderr.write(text.endsWith('\n') ? text : `${text}\n`);
  }

  protected outJson(value: unknown): void {
    this.out(maskSecrets(JSON.stringify(value, null, 2)));
  }

  /** Ends the command with this exit code (0 returns normally). */
  protected finish(code: number): void {
    if (code !== 0) this.exit(code);
  }

  protected override async catch(err: Error & { exitCode?: number; oclif?: { exit?: number } }): Promise<unknown> {
    if (err instanceof TopasError) {
      this.err(maskSecrets(`error [${err.code}]: ${err.format()}`));
      this.exit(err.exitCode);
    }
    // oclif's own exit and parse errors: flags are invalid input
    if (err.oclif?.exit !== undefined) throw err;
    if (err.name && /^(RequiredArgsError|NonExistentFlagsError|UnexpectedArgsError|FlagInvalidOptionError|ArgInvalidOptionError|CLIError|FailedFlagValidationError)$/.test(err.name)) {
      this.err(`error [INVALID_FLAGS]: ${err.message}`);
      this.exit(EXIT_CODES.invalidInput);
    }
    this.err(maskSecrets(`error [INTERNAL]: ${err.stack ?? err.message}`));
    this.exit(EXIT_CODES.failed);
  }
}
