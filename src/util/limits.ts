import * as fs from 'node:fs';
import { TopasError, type ErrorCode } from '../errors';

/**
 * Bounds on user input, documented in README.md ("Limits"). Each is far above
 * what a real test needs and far below what breaks the machine or the runtime:
 * validation rejects a value past one with exit 2, naming the field or flag.
 */
export const LIMITS = {
  /** replicas of one service: each is a process or container */
  replicas: 100,
  /** services and databases of one app together */
  appEntries: 200,
  /** replicas of all services of one app together */
  appReplicas: 1000,
  /** instances of one playbook (all roles together): each is a Lua VM in a worker thread */
  playbookInstances: 1000,
  /** arrival rate, iterations per second (peak of --rate, options.rate, stages, start_rate) */
  ratePerSecond: 1_000_000,
  /** VUs: --max-vus, options.vus, max_vus, pre_allocated_vus */
  vus: 100_000,
  /**
   * Any duration or timeout (--duration, --ramp, --timeout, stages, ready.timeout,
   * playbook timeouts). Node timers overflow past 2^31-1 ms (24.8 days) and fire at once.
   */
  durationMs: 7 * 24 * 3_600_000,
  /** one environment variable, `NAME=value` in bytes: the kernel's MAX_ARG_STRLEN (128 KiB) */
  envEntryBytes: 128 * 1024,
  /** all variables a service (or --env) sets, in bytes: half of the usual 2 MiB ARG_MAX, which also holds the inherited env */
  envTotalBytes: 1024 * 1024,
  /** topas.yaml and playbook files */
  specFileBytes: 4 * 1024 * 1024,
  /** a database's initSQLFile (a schema dump can be large; it is held in memory) */
  initSqlFileBytes: 64 * 1024 * 1024,
  /** --parallel: units (scenarios, playbooks) at once */
  parallel: 1000,
  /** --workers: worker threads */
  workers: 256,
} as const;

/** `131072 bytes` -> `128 KiB` for messages. */
export function formatBytes(n: number): string {
  if (n >= 1024 * 1024 && n % (1024 * 1024) === 0) return `${n / (1024 * 1024)} MiB`;
  if (n >= 1024 && n % 1024 === 0) return `${n / 1024} KiB`;
  if (n >= 1024 * 1024) return `${(n / (1024 * 1024)).toFixed(1)} MiB`;
  if (n >= 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${n} bytes`;
}

export function formatLimitDuration(ms: number): string {
  if (ms % 86_400_000 === 0) return `${ms / 86_400_000} days`;
  return `${ms} ms`;
}

/** Problems with one service's (or --env's) variables, as [name-or-undefined, message] pairs. */
export function envSizeProblems(env: Record<string, string>): Array<{ name?: string; message: string }> {
  const out: Array<{ name?: string; message: string }> = [];
  let total = 0;
  for (const [k, v] of Object.entries(env)) {
    const bytes = Buffer.byteLength(k) + 1 + Buffer.byteLength(v);
    total += bytes + 1;
    if (bytes + 1 > LIMITS.envEntryBytes) {
      out.push({ name: k, message: `the value is ${formatBytes(Buffer.byteLength(v))}; one variable may be at most ${formatBytes(LIMITS.envEntryBytes)} (name, "=" and value)` });
    }
  }
  if (total > LIMITS.envTotalBytes) out.push({ message: `the variables add up to ${formatBytes(total)}; at most ${formatBytes(LIMITS.envTotalBytes)} in all` });
  return out;
}

/**
 * `--env` values reach every service too: a service's own env and --env together
 * must stay within the total, or the service fails at spawn (E2BIG).
 */
export function checkServiceEnvWithFlags(services: Array<{ name: string; env: Record<string, string> }>, flagEnv: Record<string, string>): void {
  if (Object.keys(flagEnv).length === 0) return;
  const problems = [];
  for (const [i, s] of services.entries()) {
    for (const p of envSizeProblems({ ...s.env, ...flagEnv })) {
      if (p.name === undefined) problems.push({ path: `services[${i}].env + --env`, message: `${p.message} (service ${s.name} gets both)` });
    }
  }
  if (problems.length) throw new TopasError('INVALID_FLAGS', `--env: too much environment for ${problems.length} service(s)`, { problems });
}

/**
 * Reads a YAML input file (topas.yaml, a playbook) as text: refuses one past
 * the size limit, binary content (NUL bytes) and bytes that are not UTF-8,
 * naming the file and where.
 */
export function readTextInput(file: string, shown: string, code: ErrorCode, what: string): string {
  const stat = fs.statSync(file);
  // a device or FIFO (/dev/zero, /dev/stdin) would be read forever
  if (!stat.isFile()) throw new TopasError(code, `${shown}: ${what} is not a regular file`, { problems: [{ path: shown, message: 'not a regular file' }] });
  const size = stat.size;
  if (size > LIMITS.specFileBytes) {
    throw new TopasError(code, `${shown}: ${what} is ${formatBytes(size)}; at most ${formatBytes(LIMITS.specFileBytes)}`, {
      problems: [{ path: shown, message: `file too large (${formatBytes(size)}; limit ${formatBytes(LIMITS.specFileBytes)})` }],
    });
  }
  return decodeText(fs.readFileSync(file), shown, code, what);
}

export function decodeText(buf: Buffer, shown: string, code: ErrorCode, what: string): string {
  const nul = buf.indexOf(0);
  if (nul >= 0) {
    const at = lineCol(buf, nul);
    throw new TopasError(code, `${shown}: ${what} is not a text file (NUL byte at line ${at.line}, column ${at.col})`, {
      problems: [{ path: `${shown}:${at.line}:${at.col}`, message: 'binary content (NUL byte); expected UTF-8 text' }],
    });
  }
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(buf);
  } catch {
    const bad = firstInvalidUtf8(buf);
    const at = lineCol(buf, bad);
    throw new TopasError(code, `${shown}: ${what} is not valid UTF-8 (line ${at.line}, column ${at.col})`, {
      problems: [{ path: `${shown}:${at.line}:${at.col}`, message: `byte 0x${buf[bad].toString(16).padStart(2, '0')} is not valid UTF-8; save the file as UTF-8` }],
    });
  }
}

function lineCol(buf: Buffer, offset: number): { line: number; col: number } {
  let line = 1;
  let start = 0;
  for (let i = 0; i < offset; i++) {
    if (buf[i] === 0x0a) {
      line++;
      start = i + 1;
    }
  }
  return { line, col: offset - start + 1 };
}

function firstInvalidUtf8(buf: Buffer): number {
  // shortest prefix that fails: binary search on prefix length (a cut multi-byte char at the end is fine with stream: true)
  let lo = 0;
  let hi = buf.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    try {
      new TextDecoder('utf-8', { fatal: true }).decode(buf.subarray(0, mid + 1), { stream: true });
      lo = mid + 1;
    } catch {
      hi = mid;
    }
  }
  let bad = Math.min(lo, buf.length - 1);
  // a lead byte whose sequence is cut short fails only at the byte after it: point at the lead byte
  for (let i = bad - 1; i >= Math.max(0, bad - 3); i--) {
    if (buf[i] >= 0xc0) {
      bad = i;
      break;
    }
    if (buf[i] < 0x80) break;
  }
  return bad;
}
