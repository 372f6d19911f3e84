import type { AppSpec } from './app-spec';
import { findReferences } from './references';

export const MASK = '***';
/** Shorter values would mask ordinary text all over the output. */
const MIN_SECRET_LENGTH = 3;
const SECRET_NAME_RE = /PASSWORD|SECRET|TOKEN|KEY/i;
// The password part of `scheme://user:password@host`, whatever registered it.
const URL_PASSWORD_RE = /\b([a-z][a-z0-9+.-]*:\/\/[^\s:/@]+:)([^\s/@]+)@/gi;

export function isSecretName(envName: string): boolean {
  return SECRET_NAME_RE.test(envName);
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** The value plus the forms it takes inside a URL or a JSON string. */
function variants(value: string): string[] {
  const out = new Set([value]);
  out.add(encodeURIComponent(value));
  out.add(JSON.stringify(value).slice(1, -1));
  return [...out];
}

function buildMasker(secrets: Iterable<string>): (text: string) => string {
  const all = new Set<string>();
  for (const s of secrets) {
    if (typeof s !== 'string' || s.length < MIN_SECRET_LENGTH) continue;
    for (const v of variants(s)) all.add(v);
  }
  // Longest first, so a secret that contains another is masked whole.
  const sorted = [...all].sort((a, b) => b.length - a.length);
  const re = sorted.length > 0 ? new RegExp(sorted.map(escapeRegExp).join('|'), 'g') : undefined;
  return (text: string) => {
    let out = re ? text.replace(re, MASK) : text;
    out = out.replace(URL_PASSWORD_RE, (_m, head: string) => `${head}${MASK}@`);
    return out;
  };
}

/** Secret values named by the spec: database passwords and env values whose names look secret. */
export function specSecrets(spec: AppSpec): string[] {
  const out: string[] = [];
  for (const db of spec.databases) out.push(db.credentials.password);
  for (const svc of spec.services) {
    for (const [name, value] of Object.entries(svc.env)) {
      // A reference like ${db.password} is not itself secret; its resolved value
      // is (and is in the list already, or registered by the backend).
      if (isSecretName(name) && findReferences(value).length === 0) out.push(value);
    }
  }
  return out;
}

/**
 * A function that replaces every secret of the spec (and `extra`, and anything
 * registered process-wide) with `***`, also inside URLs.
 */
export function createMasker(spec: AppSpec, extra: string[] = []): (text: string) => string {
  const local = buildMasker([...specSecrets(spec), ...extra]);
  return (text: string) => maskSecrets(local(text));
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

export function maskSecrets(text: string): string {
  registeredMasker ??= buildMasker(registered);
  return registeredMasker(text);
}

/** For tests: forget everything registered. */
export function clearRegisteredSecrets(): void {
  registered.clear();
  registeredMasker = undefined;
}
