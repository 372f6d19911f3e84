/**
 * `${name.field}` references inside app-spec strings (env values, command args).
 * They stay unresolved in the AppSpec; each backend resolves them for where the
 * consumer runs (docker network name, 127.0.0.1:<port>, Service DNS name).
 */
export interface Reference {
  /** service or database name */
  name: string;
  /** `url`, `host`, `port`, `user`, `password`, `dbname`, `name` or `ports.<portName>` */
  field: string;
  /** the reference as written, e.g. `${db.url}` */
  raw: string;
}

// A name, a dot, then a field that may itself be dotted (`ports.grpc`). Names are
// matched loosely (any case, `_`) so that validation can report bad names instead
// of silently ignoring them.
const REFERENCE_RE = /\$\{\s*([A-Za-z0-9_-]+)\.([A-Za-z0-9_.-]+)\s*\}/g;

export function findReferences(value: string): Reference[] {
  const out: Reference[] = [];
  for (const m of value.matchAll(REFERENCE_RE)) {
    out.push({ name: m[1], field: m[2], raw: m[0] });
  }
  return out;
}

export function resolveReferences(value: string, resolve: (name: string, field: string) => string): string {
  return value.replace(REFERENCE_RE, (_raw, name: string, field: string) => resolve(name, field));
}

export const SERVICE_REFERENCE_FIELDS = ['url', 'host', 'port', 'name'] as const;
export const DATABASE_REFERENCE_FIELDS = ['url', 'host', 'port', 'user', 'password', 'dbname', 'name'] as const;

/**
 * The first `${` without a closing `}` (`$${` is a literal and skipped), shown
 * up to the end of its word, e.g. `${db.url`; undefined when every one closes.
 */
export function findUnclosedReference(value: string): string | undefined {
  for (let i = value.indexOf('${'); i >= 0; i = value.indexOf('${', i + 2)) {
    if (i > 0 && value[i - 1] === '$') continue;
    const close = value.indexOf('}', i + 2);
    const nextOpen = value.indexOf('${', i + 2);
    if (close < 0 || (nextOpen >= 0 && nextOpen < close)) {
      const rest = value.slice(i);
      const word = /^\$\{[^\s"'$]*/.exec(rest)?.[0] ?? '${';
      return word.length > 60 ? `${word.slice(0, 60)}…` : word;
    }
  }
  return undefined;
}
