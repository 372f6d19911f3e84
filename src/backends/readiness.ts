import * as http from 'node:http';
import * as https from 'node:https';
import * as net from 'node:net';
import { TopasError } from '../errors';
import { formatDurationMs } from '../util/duration';

/**
 * Readiness probes shared by the local and docker backends. Each one polls until
 * the target answers, the time runs out (READINESS_TIMEOUT naming what was probed
 * and the last result), the signal aborts (INTERRUPTED), or the liveness hook
 * reports that the thing being probed is gone (SUT_START_FAILED at once, so a
 * process that crashes on start does not burn the whole timeout).
 */
export interface ProbeOptions {
  timeoutMs: number;
  signal?: AbortSignal;
  /** pause between attempts; default 100ms */
  intervalMs?: number;
  /**
   * The first pause, doubling up to `intervalMs`: a target that is just
   * starting is asked again soon (ready sooner) without asking often for long.
   */
  firstIntervalMs?: number;
  /** who is probed, for messages: `service api replica 2` */
  label?: string;
  /**
   * Called before every attempt: return undefined while the target lives, or a
   * description of why it is gone (exit code, last log lines) to fail fast.
   */
  liveness?: () => string | undefined;
  /** extra text for the timeout message, e.g. the target's last log lines */
  context?: () => string;
}

export interface HttpProbeOptions extends ProbeOptions {
  /** path appended to the base URL; default `/` */
  path?: string;
  /** per-attempt request timeout; default min(2s, timeoutMs) */
  attemptTimeoutMs?: number;
}

/** One attempt: undefined when ready, else what was seen (for the timeout message). */
type Attempt = () => Promise<string | undefined>;

const DEFAULT_INTERVAL_MS = 100;

async function poll(what: string, attempt: Attempt, opts: ProbeOptions): Promise<void> {
  const label = opts.label ?? 'target';
  const intervalMs = opts.intervalMs ?? DEFAULT_INTERVAL_MS;
  let pauseMs = Math.min(opts.firstIntervalMs ?? intervalMs, intervalMs);
  const deadline = Date.now() + opts.timeoutMs;
  let last = 'no attempt yet';
  for (;;) {
    throwIfAborted(opts.signal, label);
    const gone = opts.liveness?.();
    if (gone !== undefined) {
      throw new TopasError('SUT_START_FAILED', `${label}: exited while waiting for readiness (${what}): ${gone}`);
    }
    const result = await attempt();
    if (result === undefined) return;
    last = result;
    const leftMs = deadline - Date.now();
    if (leftMs <= 0) {
      const ctx = opts.context?.() ?? '';
      throw new TopasError(
        'READINESS_TIMEOUT',
        `${label}: not ready after ${formatDurationMs(opts.timeoutMs)} (${what}: last result ${last})${ctx ? `\n${ctx}` : ''}`,
      );
    }
    await sleep(Math.min(pauseMs, leftMs), opts.signal);
    pauseMs = Math.min(pauseMs * 2, intervalMs);
  }
}

function throwIfAborted(signal: AbortSignal | undefined, label: string): void {
  if (signal?.aborted) throw new TopasError('INTERRUPTED', `${label}: readiness wait interrupted`);
}

/** Resolves after ms, or early when the signal aborts (the caller checks it next). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** Ready when `GET base+path` answers 2xx or 3xx. */
export function waitForHttp(url: string, opts: HttpProbeOptions): Promise<void> {
  const path = opts.path ?? '/';
  // plain concatenation keeps a base URL's own path (new URL(path, base) would drop it)
  const full = url.replace(/\/+$/, '') + (path.startsWith('/') ? path : '/' + path);
  const attemptTimeoutMs = opts.attemptTimeoutMs ?? Math.min(2000, Math.max(opts.timeoutMs, 100));
  return poll(`http GET ${path}`, () => httpAttempt(full, attemptTimeoutMs, opts.signal), opts);
}

function httpAttempt(url: string, timeoutMs: number, signal?: AbortSignal): Promise<string | undefined> {
  return new Promise((resolve) => {
    let settled = false;
    const finish = (v: string | undefined): void => {
      if (settled) return;
      settled = true;
      resolve(v);
    };
    // agent:false + no keep-alive: a probe must not leave sockets behind
    // a TLS port is probed without verifying its (often self-signed) certificate: readiness is not trust
    const get = url.startsWith('https:') ? (https.get as typeof http.get) : http.get;
    const req = get(url, { agent: false, timeout: timeoutMs, signal, headers: { connection: 'close' }, ...(url.startsWith('https:') ? { rejectUnauthorized: false } : {}) }, (res) => {
      res.resume();
      const code = res.statusCode ?? 0;
      finish(code >= 200 && code < 400 ? undefined : `HTTP ${code}`);
    });
    req.on('timeout', () => {
      req.destroy();
      finish(`no answer within ${formatDurationMs(timeoutMs)}`);
    });
    req.on('error', (e: NodeJS.ErrnoException) => finish(e.code ?? e.message));
  });
}

/** Ready when a TCP connection to host:port succeeds. */
export function waitForTcp(host: string, port: number, opts: ProbeOptions): Promise<void> {
  return poll(`tcp ${host}:${port}`, () => tcpAttempt(host, port, Math.min(2000, Math.max(opts.timeoutMs, 100))), opts);
}

function tcpAttempt(host: string, port: number, timeoutMs: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const sock = net.connect({ host, port });
    const done = (v: string | undefined): void => {
      sock.removeAllListeners();
      sock.on('error', () => {});
      sock.destroy();
      resolve(v);
    };
    sock.setTimeout(timeoutMs, () => done(`no connection within ${formatDurationMs(timeoutMs)}`));
    sock.once('connect', () => done(undefined));
    sock.once('error', (e: NodeJS.ErrnoException) => done(e.code ?? e.message));
  });
}

/**
 * Ready when the logs match `pattern`: a regular expression when it is one,
 * else a plain substring (so `listening on 8080 (v1)` needs no escaping).
 */
export function waitForLog(getLogs: () => string, pattern: string, opts: ProbeOptions): Promise<void> {
  const matches = logMatcher(pattern);
  return poll(
    `log /${pattern}/`,
    async () => {
      const text = getLogs();
      if (matches(text)) return undefined;
      const lastLine = text.trimEnd().split('\n').pop() ?? '';
      return lastLine ? `last line "${truncate(lastLine, 200)}"` : 'no output yet';
    },
    opts,
  );
}

export function logMatcher(pattern: string): (text: string) => boolean {
  let re: RegExp | undefined;
  try {
    re = new RegExp(pattern, 'm');
  } catch {
    re = undefined;
  }
  return (text) => text.includes(pattern) || (re !== undefined && re.test(text));
}

function truncate(s: string, n: number): string {
  return s.length > n ? s.slice(0, n) + '…' : s;
}

/** Last `n` non-empty lines of a text, for error messages. */
export function lastLines(text: string, n: number): string {
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  return lines.slice(-n).join('\n');
}
