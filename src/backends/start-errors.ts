import * as fs from 'node:fs';
import * as path from 'node:path';
import { TopasError } from '../errors';
import type { AppSpec, DatabaseSpec, ServiceSpec } from '../spec/app-spec';
import { formatDurationMs } from '../util/duration';
import { lastLines } from './readiness';

/**
 * What a failed stand-up tells the user, the same on every backend: the cause,
 * the last lines the service printed (each with its replica's prefix, as
 * `[api-1] ...`), and a hint naming the field of topas.yaml to look at.
 */
const LOG_TAIL_LINES = 20;

/** `services[0] (api) in topas.yaml`: where a service or database is declared. */
export function specWhere(spec: AppSpec, name: string): string {
  const file = path.basename(spec.file || 'topas.yaml');
  const s = spec.services.findIndex((x) => x.name === name);
  if (s >= 0) return `services[${s}] (${name}) in ${file}`;
  const d = spec.databases.findIndex((x) => x.name === name);
  if (d >= 0) return `databases[${d}] (${name}) in ${file}`;
  return `${name} in ${file}`;
}

/** The last lines of some output under a heading, each prefixed `[prefix] `. */
export function logExcerpt(text: string, prefix: string, n = LOG_TAIL_LINES): string {
  const tail = lastLines(text, n);
  if (!tail) return `${prefix} printed nothing`;
  const lines = tail.split('\n');
  return `last ${lines.length} log line${lines.length === 1 ? '' : 's'} of ${prefix}:\n${lines.map((l) => `[${prefix}] ${l}`).join('\n')}`;
}

/** A TopasError with the log excerpt below its message and this hint (when it has none). */
export function withDetails(err: TopasError, details: { excerpt?: string; hint?: string }): TopasError {
  const message = details.excerpt ? `${err.message}\n${details.excerpt}` : err.message;
  const out = new TopasError(err.code, message, { problems: err.problems, hint: err.hint ?? details.hint, cause: err.cause ?? err });
  out.stack = err.stack;
  return out;
}

/** `exit code 1` -> `exited with code 1`; `killed by SIGKILL` -> `was killed by SIGKILL`. */
function exitPhrase(exited: string): string {
  const code = /^exit code (\d+)/.exec(exited);
  if (code) return `exited with code ${code[1]}`;
  if (/^killed by /.test(exited)) return `was ${exited}`;
  if (/gone/.test(exited)) return 'was removed';
  return 'exited';
}

export interface ReplicaFailure {
  spec: AppSpec;
  service: ServiceSpec;
  replica: number;
  backend: 'local' | 'docker';
  /** how the replica ended, when it did (`exit code 1`, `killed by SIGKILL`) */
  exited?: string;
  /** its output so far */
  logs: string;
}

/**
 * A replica that did not get ready: the readiness error with the replica's last
 * log lines and a hint (it exited: why and what to check; it never answered:
 * which readiness check, and where it is declared). Interrupts pass unchanged.
 */
export function replicaStartFailure(err: unknown, f: ReplicaFailure): unknown {
  if (!(err instanceof TopasError) || err.code === 'INTERRUPTED' || err.code === 'SUT_NOT_UP') return err;
  const { service: s } = f;
  const where = specWhere(f.spec, s.name);
  const prefix = `${s.name}-${f.replica}`;
  let hint: string;
  if (f.exited) {
    const what = f.backend === 'local' ? '`command`, `cwd`' : '`image`, `version`';
    hint = `the service ${exitPhrase(f.exited)} before it was ready: its last log lines above say why; check ${what} and \`env\` of ${where}`;
    if (f.backend === 'local' && /^exit code 127$/.test(f.exited)) hint += ' (exit code 127: a program it runs was not found)';
  } else {
    const within = formatDurationMs(s.ready.timeoutMs);
    const port = f.backend === 'local' ? 'the port topas gives it in $PORT' : `port ${s.port} (\`port\`)`;
    switch (s.ready.kind) {
      case 'http':
        hint = `nothing answered GET ${s.ready.path} with 2xx/3xx within ${within}: check \`ready\` of ${where} (the path, the timeout) and that the service listens on ${port}`;
        break;
      case 'tcp':
        hint = `nothing accepted a connection within ${within}: check that the service listens on ${port}, or raise \`ready.timeout\` of ${where}`;
        break;
      case 'log':
        hint = `no log line matched "${s.ready.pattern}" within ${within}: check \`ready.log\` of ${where}, or raise its timeout`;
        break;
      default:
        hint = `check ${where}`;
    }
  }
  return withDetails(err, { excerpt: logExcerpt(f.logs, prefix), hint });
}

/** A local `command` that could not be started at all (spawn failed: not found, not executable, no cwd). */
export function commandHint(spec: AppSpec, service: ServiceSpec, cwd: string, errno: string | undefined): string {
  const where = specWhere(spec, service.name);
  const program = service.command?.[0] ?? '';
  if (!fs.existsSync(cwd)) return `the service's folder ${cwd} does not exist: check \`cwd\` of ${where}`;
  if (errno === 'ENOENT') {
    const how = program.includes('/') ? `a relative path starts from ${cwd}` : 'a bare name is looked up on PATH';
    return `check \`command\` of ${where}: \`${program}\` was not found (${how})`;
  }
  if (errno === 'EACCES') return `check \`command\` of ${where}: \`${program}\` is not executable (chmod +x it, or run it through its interpreter)`;
  return `check \`command\` of ${where}`;
}

/**
 * initSQL rejected by PostgreSQL: the server's message, the line of initSQL it
 * points at (PostgreSQL gives a character position), and where it is declared.
 */
export function initSqlFailure(spec: AppSpec | undefined, db: DatabaseSpec, err: unknown): TopasError {
  const e = err as Error & { position?: string };
  let message = `database ${db.name}: initSQL failed: ${e.message ?? String(err)}`;
  const pos = Number(e.position);
  if (db.initSQL && Number.isInteger(pos) && pos > 0) {
    const before = db.initSQL.slice(0, pos - 1);
    const lineNo = before.split('\n').length;
    const line = db.initSQL.split('\n')[lineNo - 1] ?? '';
    message += `\ninitSQL line ${lineNo}: ${line.trim()}`;
  }
  const where = spec ? specWhere(spec, db.name) : `database ${db.name}`;
  return new TopasError('SUT_START_FAILED', message, {
    hint: `fix \`initSQL\` of ${where}; it runs once, as user ${db.credentials.user} in database ${db.credentials.dbname}`,
    cause: err,
  });
}
