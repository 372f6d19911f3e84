import { type Io, processIo } from '../io';

/**
 * The Io that commands use. Tests swap it to run the CLI in-process; the
 * binary uses the real process.
 */
let current: Io | undefined;

export function cliIo(): Io {
  if (!current) current = processIo();
  return current;
}

export function setCliIo(io: Io | undefined): void {
  current = io;
}
