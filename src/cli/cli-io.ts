import { type Io, processIo } from '../io';
import { maskSecrets } from '../spec/secrets';

/**
 * The Io that commands use. Tests swap it to run the CLI in-process; the
 * binary uses the real process. What commands write to stdout and stderr is
 * masked on its way out (every secret registered so far, in any encoding):
 * the last line of defence behind the masking of each log line and report.
 */
let current: Io | undefined;
let masked: { of: Io; io: Io } | undefined;

export function cliIo(): Io {
  if (!current) current = processIo();
  if (masked?.of !== current) masked = { of: current, io: maskedIo(current) };
  return masked.io;
}

export function setCliIo(io: Io | undefined): void {
  current = io;
}

function maskedStream<S extends Io['stdout'] | Io['stderr']>(stream: S): S {
  return new Proxy(stream, {
    get(target, prop, receiver) {
      if (prop === 'write') return (chunk: unknown, ...rest: unknown[]) => (target.write as (...a: unknown[]) => unknown).call(target, typeof chunk === 'string' ? maskSecrets(chunk) : chunk, ...rest);
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

function maskedIo(io: Io): Io {
  const stdout = maskedStream(io.stdout);
  const stderr = maskedStream(io.stderr);
  return {
    stdout,
    stderr,
    get env() {
      return io.env;
    },
    get cwd() {
      return io.cwd;
    },
    now: () => io.now(),
    onSignal: (handler) => io.onSignal(handler),
  };
}
