import type { AppSpec } from './app-spec';
import { findReferences } from './references';

const MASK = '***';
/** Shorter values would mask ordinary text all over the output. */
const MIN_SECRET_LENGTH = 3;
const SECRET_NAME_RE = /PASSWORD|SECRET|TOKEN|KEY/i;
// The password part of `scheme://user:password@host`, whatever registered it.
const URL_PASSWORD_RE = /\b([a-z][a-z0-9+.-]*:\/\/[^\s:/@]+:)([^\s/@]+)@/gi;

function isSecretName(envName: string): boolean {
  return SECRET_NAME_RE.test(envName);
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** `3c` -> `3[cC]`: percent-encoding and entities come in either case. */
function hexPattern(n: number, width: number): string {
  return n
    .toString(16)
    .padStart(width, '0')
    .replace(/[a-f]/g, (d) => `[${d}${d.toUpperCase()}]`);
}

const NAMED_ENTITIES: Record<string, string> = { '&': 'amp', '<': 'lt', '>': 'gt', '"': 'quot', "'": 'apos' };
const JSON_SHORT_ESCAPES: Record<string, string> = { '\n': 'n', '\r': 'r', '\t': 't', '\b': 'b', '\f': 'f' };

/**
 * One character of a secret in every form it takes on the way out: raw,
 * percent-encoded (either hex case, `+` for a space, percent-encoded again),
 * JSON-escaped (at any depth of nesting), XML/HTML entities (named, decimal,
 * hex, and `&amp;` escaped again). Mixed forms (a URL encoder that leaves some
 * characters alone, an entity inside a JSON string) match too, because every
 * character may take any of its forms.
 */
function charPattern(ch: string): string {
  const cp = ch.codePointAt(0)!;
  const alts: string[] = [];
  // JSON-escaped backslashes come in pairs (never eat half of the next escape); a URL path turns one into `/`
  if (ch === '\\') alts.push('(?:\\\\\\\\)+', '/');
  alts.push(escapeRegExp(ch));
  alts.push([...Buffer.from(ch, 'utf8')].map((b) => `%(?:25)*${hexPattern(b, 2)}`).join(''));
  if (ch === ' ') alts.push('\\+');
  const units = cp > 0xffff ? [ch.charCodeAt(0), ch.charCodeAt(1)] : [cp];
  alts.push(units.map((u) => `\\\\+u${hexPattern(u, 4)}`).join(''));
  if (JSON_SHORT_ESCAPES[ch]) alts.push(`\\\\+${JSON_SHORT_ESCAPES[ch]}`);
  const entity = [`#0*${cp};`, `#[xX]0*${hexPattern(cp, 1)};`];
  if (NAMED_ENTITIES[ch]) entity.unshift(`${NAMED_ENTITIES[ch]};`);
  alts.push(`&(?:amp;)*(?:${entity.join('|')})`);
  const any = `(?:${alts.join('|')})`;
  // `\"`, `\/`, `\'`, also in front of an entity (JSON inside XML); a quote
  // doubled is how SQL writes it in a literal (PostgreSQL echoes the statement)
  if (ch === '"' || ch === "'") return `(?:\\\\*${any}){1,2}`;
  return ch === '/' ? `\\\\*${any}` : any;
}

/** A regex source that matches `secret` in any of its encodings. */
function secretPattern(secret: string): string {
  return [...secret].map(charPattern).join('');
}

/** Base64 shorter than this is not looked for: it would match ordinary words. */
const MIN_BASE64_CHARS = 8;

/**
 * The base64 characters that only the secret's bytes decide, for each of the
 * three alignments it can have inside a longer encoded text (standard and
 * URL-safe alphabets). `Authorization: Basic base64(user:password)` is the
 * common case: scenarios log their headers, and anyone can decode them.
 */
function base64Cores(secret: string): string[] {
  const bytes = Buffer.from(secret, 'utf8');
  const out = new Set<string>();
  for (let offset = 0; offset < 3; offset++) {
    const b64 = Buffer.concat([Buffer.alloc(offset), bytes]).toString('base64');
    const core = b64.slice(Math.ceil((8 * offset) / 6), Math.floor((8 * (offset + bytes.length)) / 6));
    if (core.length < MIN_BASE64_CHARS) continue;
    out.add(core);
    out.add(core.replace(/\+/g, '-').replace(/\//g, '_'));
  }
  return [...out];
}

function buildMasker(secrets: Iterable<string>): (text: string) => string {
  const all = new Set<string>();
  for (const s of secrets) if (typeof s === 'string' && s.length >= MIN_SECRET_LENGTH) all.add(s);
  // Longest first, so a secret that contains another is masked whole.
  const sorted = [...all].sort((a, b) => b.length - a.length);
  const patterns = [...sorted.map(secretPattern), ...sorted.flatMap(base64Cores).sort((a, b) => b.length - a.length).map(escapeRegExp)];
  const re = patterns.length > 0 ? new RegExp(patterns.join('|'), 'g') : undefined;
  return (text: string) => {
    if (typeof text !== 'string') return text;
    let out = re ? text.replace(re, MASK) : text;
    out = out.replace(URL_PASSWORD_RE, (_m, head: string) => `${head}${MASK}@`);
    return out;
  };
}

/** Secret values named by the spec: database passwords and env values whose names look secret. */
function specSecrets(spec: AppSpec): string[] {
  const out: string[] = [];
  for (const db of spec.databases) out.push(db.credentials.password);
  for (const svc of spec.services) {
    for (const [name, value] of Object.entries(svc.env)) {
      // A reference like ${db.password} is not itself secret; its resolved value
      // is (and is in the list already, or registered by the backend).
      if (isSecretName(name) && findReferences(value).length === 0) out.push(value);
    }
  }
  for (const [name, value] of Object.entries(spec.env ?? {})) if (isSecretName(name)) out.push(value);
  return out;
}

/**
 * A function that replaces every secret of the spec (and `extra`, and anything
 * registered process-wide) with `***`, in any encoding, also inside URLs.
 */
export function createMasker(spec: AppSpec, extra: string[] = []): (text: string) => string {
  const local = buildMasker([...specSecrets(spec), ...extra]);
  return (text: string) => maskSecrets(local(text));
}

/**
 * Every string of a JSON-like value masked, object keys too (metric names
 * carry URLs). Keys that become equal once masked stay apart (` (2)`): a
 * record must not lose an entry to masking. Mask a value before encoding it;
 * masking the encoded text afterwards is the safety net.
 */
export function maskDeep<T>(value: T, mask: (s: string) => string = maskSecrets): T {
  const walk = (v: unknown): unknown => {
    if (typeof v === 'string') return mask(v);
    if (Array.isArray(v)) return v.map(walk);
    if (v !== null && typeof v === 'object') {
      if (typeof (v as { toJSON?: unknown }).toJSON === 'function') return walk((v as { toJSON(): unknown }).toJSON());
      const out: Record<string, unknown> = {};
      for (const [k, x] of Object.entries(v)) {
        if (x === undefined) continue;
        let key = mask(k);
        for (let n = 2; key !== k && Object.prototype.hasOwnProperty.call(out, key); n++) key = `${mask(k)} (${n})`;
        out[key] = walk(x);
      }
      return out;
    }
    return v;
  };
  return walk(value) as T;
}

/** `JSON.stringify` of the masked value, with the text masked again (escaped forms). */
export function maskedJson(value: unknown, mask: (s: string) => string = maskSecrets, indent?: number): string {
  return mask(JSON.stringify(maskDeep(value, mask), null, indent));
}

// Process-wide (per thread: workers have their own) registry for loggers.
const registered = new Set<string>();
let registeredMasker: ((text: string) => string) | undefined;

export function registerSecret(value: string): void {
  if (typeof value !== 'string' || value.length < MIN_SECRET_LENGTH || registered.has(value)) return;
  registered.add(value);
  registeredMasker = undefined;
}

export function registerSpecSecrets(spec: AppSpec): void {
  for (const s of specSecrets(spec)) registerSecret(s);
}

/** `--env` values whose names look secret. */
export function registerEnvSecrets(env: Record<string, string>): void {
  for (const [k, v] of Object.entries(env)) if (isSecretName(k)) registerSecret(v);
}

/**
 * Strings under secret-looking keys anywhere in `value`: what a backend made
 * up at run time and keeps in its state (a generated PostgreSQL superuser
 * password, a proxy host's token, services' secret env).
 */
export function registerSecretsIn(value: unknown, depth = 0): void {
  if (depth > 20 || value === null || typeof value !== 'object') return;
  for (const [k, v] of Object.entries(value)) {
    if (typeof v === 'string') {
      if (isSecretName(k)) registerSecret(v);
    } else registerSecretsIn(v, depth + 1);
  }
}

export function maskSecrets(text: string): string {
  registeredMasker ??= buildMasker(registered);
  return registeredMasker(text);
}

/** For tests: forget everything registered. */
export function clearRegisteredSecrets(): void {
  registered.clear();
  registeredMasker = undefined;
}
