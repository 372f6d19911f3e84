import { Command, Flags } from '@oclif/core';
import { cliIo } from './cli-io';
import { registerPluginBackends } from '../backends/plugin-backends';
import { EXIT_CODES, TopasError, internalLine, stackOf } from '../errors';
import type { Io } from '../io';
import { maskSecrets } from '../spec/secrets';
import { colorEnabled, paint } from '../util/color';

/**
 * Every topas command: knows its Io, renders TopasErrors with their problems
 * and hint, and turns them into the one exit-code table.
 */
export abstract class BaseCommand extends Command {
  static override baseFlags = {
    json: Flags.boolean({ description: 'print machine-readable JSON on stdout', default: false }),
    debug: Flags.boolean({ description: 'print the stack trace of an error', default: false }),
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

  /** --debug: errors come with their stacks (parsed flags may not exist yet when parsing failed). */
  protected get debugRequested(): boolean {
    return this.argv.includes('--debug');
  }

  /** `error [CODE]`, red where colour is on (NO_COLOR / FORCE_COLOR / a terminal) */
  private errorLabel(code: string): string {
    return paint(colorEnabled(this.io.env, this.io.stderr), 'red', `error [${code}]`);
  }

  protected override async catch(err: Error & { exitCode?: number; oclif?: { exit?: number } }): Promise<unknown> {
    if (err instanceof TopasError) {
      this.err(maskSecrets(`${this.errorLabel(err.code)}: ${err.format()}`));
      if (this.debugRequested) this.err(maskSecrets(stackOf(err)));
      this.exit(err.exitCode);
    }
    // oclif's own exit and parse errors: flags are invalid input
    if (err.oclif?.exit !== undefined) throw err;
    if (err.name && /^(RequiredArgsError|NonExistentFlagsError|UnexpectedArgsError|FlagInvalidOptionError|ArgInvalidOptionError|CLIError|FailedFlagValidationError)$/.test(err.name)) {
      this.err(`${this.errorLabel('INVALID_FLAGS')}: ${err.message}`);
      this.exit(EXIT_CODES.invalidInput);
    }
    // a bug, not a user's mistake: one line unless --debug
    if (this.debugRequested) this.err(maskSecrets(`${this.errorLabel('INTERNAL')}: ${stackOf(err)}`));
    else this.err(maskSecrets(`${this.errorLabel('INTERNAL')}: ${internalLine(err)}`));
    this.exit(EXIT_CODES.failed);
  }
}
