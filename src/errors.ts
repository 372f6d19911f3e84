/**
 * One error root for everything topas raises on purpose. The `code` is stable
 * (tests and users match on it); the exit code follows from it through one table.
 */
export const EXIT_CODES = {
  ok: 0,
  failed: 1,
  invalidInput: 2,
  sutFailed: 3,
  thresholdsFailed: 4,
  timedOut: 5,
  interrupted: 130,
} as const;

export type ExitCode = (typeof EXIT_CODES)[keyof typeof EXIT_CODES];

export type ErrorCode =
  | 'INVALID_FLAGS'
  | 'INVALID_APP_SPEC'
  | 'INVALID_PLAYBOOK'
  | 'LUA_SYNTAX'
  | 'FILE_NOT_FOUND'
  | 'UNTRANSLATABLE'
  | 'BACKEND_UNAVAILABLE'
  | 'IMAGE_NOT_FOUND'
  | 'SUT_START_FAILED'
  | 'READINESS_TIMEOUT'
  | 'SUT_NOT_UP'
  | 'RUNNER_FAILED'
  | 'GIT_FETCH_FAILED'
  | 'SCENARIO_FAILED'
  | 'THRESHOLDS_FAILED'
  | 'TIMEOUT'
  | 'INTERRUPTED'
  | 'INTERNAL';

const EXIT_BY_CODE: Record<ErrorCode, ExitCode> = {
  INVALID_FLAGS: EXIT_CODES.invalidInput,
  INVALID_APP_SPEC: EXIT_CODES.invalidInput,
  INVALID_PLAYBOOK: EXIT_CODES.invalidInput,
  LUA_SYNTAX: EXIT_CODES.invalidInput,
  FILE_NOT_FOUND: EXIT_CODES.invalidInput,
  UNTRANSLATABLE: EXIT_CODES.invalidInput,
  BACKEND_UNAVAILABLE: EXIT_CODES.sutFailed,
  IMAGE_NOT_FOUND: EXIT_CODES.sutFailed,
  SUT_START_FAILED: EXIT_CODES.sutFailed,
  READINESS_TIMEOUT: EXIT_CODES.sutFailed,
  SUT_NOT_UP: EXIT_CODES.sutFailed,
  /** the runner next to a remote SUT (a cluster's runner Job) could not run the scenarios: a backend failure, not a test verdict */
  RUNNER_FAILED: EXIT_CODES.sutFailed,
  /** a runner that fetches a Git source itself (a cluster's runner pod) could not: unreachable, unknown ref, refused credentials */
  GIT_FETCH_FAILED: EXIT_CODES.sutFailed,
  SCENARIO_FAILED: EXIT_CODES.failed,
  THRESHOLDS_FAILED: EXIT_CODES.thresholdsFailed,
  TIMEOUT: EXIT_CODES.timedOut,
  INTERRUPTED: EXIT_CODES.interrupted,
  INTERNAL: EXIT_CODES.failed,
};

/** One problem found while validating input, with where it is. */
export interface Problem {
  /** e.g. `services[1].port` or `tests/a.lua:12` */
  path: string;
  message: string;
}

/**
 * Marks a TopasError across copies of this module: a plugin installed with
 * `topas plugins install` brings its own copy of topas (its dependency), and
 * what it throws must still render and exit as a TopasError of the CLI's copy.
 */
const TOPAS_ERROR_BRAND = Symbol.for('topas.TopasError');

export class TopasError extends Error {
  static override [Symbol.hasInstance](value: unknown): boolean {
    return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[TOPAS_ERROR_BRAND] === true;
  }

  readonly code: ErrorCode;
  readonly problems: Problem[];
  /** Extra hint for the user: what to do about it. */
  readonly hint?: string;

  constructor(code: ErrorCode, message: string, opts: { problems?: Problem[]; hint?: string; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'TopasError';
    Object.defineProperty(this, TOPAS_ERROR_BRAND, { value: true });
    this.code = code;
    this.problems = opts.problems ?? [];
    this.hint = opts.hint;
  }

  get exitCode(): ExitCode {
    return EXIT_BY_CODE[this.code];
  }

  /** Human text: message, then one line per problem, then the hint. */
  format(): string {
    const lines = [this.message];
    for (const p of this.problems) lines.push(`  ${p.path}: ${p.message}`);
    if (this.hint) lines.push(`hint: ${this.hint}`);
    return lines.join('\n');
  }

  toJSON(): SerializedError {
    return serializeError(this);
  }
}

/** An error that is not a TopasError, as users see it without --debug: one line. */
export function internalLine(err: unknown): string {
  const message = err instanceof Error ? `${err.name && err.name !== 'Error' ? `${err.name}: ` : ''}${err.message}` : String(err);
  return `${message.split('\n')[0]} (run with --debug for the stack)`;
}

/** For --debug: the stack, then the stacks of its causes. */
export function stackOf(err: unknown): string {
  const parts: string[] = [];
  const seen = new Set<unknown>();
  for (let e: unknown = err; e !== undefined && e !== null && !seen.has(e); e = (e as { cause?: unknown }).cause) {
    seen.add(e);
    const text = e instanceof Error ? (e.stack ?? `${e.name}: ${e.message}`) : String(e);
    parts.push(parts.length === 0 ? text : `caused by: ${text}`);
  }
  return parts.join('\n');
}

/** Errors cross worker threads and land in run records as plain values. */
export interface SerializedError {
  name: string;
  message: string;
  code?: ErrorCode;
  problems?: Problem[];
  hint?: string;
  /** `file.lua:LINE` where a Lua error was raised, when known. */
  location?: string;
  /** Lua traceback or JS stack. */
  stack?: string;
}

export function serializeError(err: unknown): SerializedError {
  if (err instanceof TopasError) {
    return { name: err.name, message: err.message, code: err.code, problems: err.problems, hint: err.hint, stack: err.stack };
  }
  if (err instanceof Error) {
    const out: SerializedError = { name: err.name, message: err.message, stack: err.stack };
    const anyErr = err as Error & { location?: string; code?: unknown };
    if (typeof anyErr.location === 'string') out.location = anyErr.location;
    return out;
  }
  return { name: 'Error', message: String(err) };
}

/** A run's own error as reports show it: its JS stack only with --debug (scenario errors keep their Lua tracebacks). */
export function reportedError(err: unknown, debug = false): SerializedError {
  const s = serializeError(err);
  if (debug) s.stack = stackOf(err);
  else delete s.stack;
  if (!(err instanceof TopasError) && !debug) s.message = internalLine(err);
  return s;
}

export function deserializeError(s: SerializedError): Error {
  if (s.code) {
    const e = new TopasError(s.code, s.message, { problems: s.problems, hint: s.hint });
    if (s.stack) e.stack = s.stack;
    return e;
  }
  const e = new Error(s.message);
  e.name = s.name;
  if (s.stack) e.stack = s.stack;
  if (s.location) (e as Error & { location?: string }).location = s.location;
  return e;
}
