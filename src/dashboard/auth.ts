import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

/**
 * Only the user who started the dashboard may use it: the URL it prints holds
 * a random token. A request proves it knows the token by the `token` query
 * parameter (the printed URL; scrapers of /metrics), an `Authorization:
 * Bearer` header, or the cookie the first page view sets (HttpOnly,
 * SameSite=Strict, so other sites' pages cannot send it). The Host header must
 * name the loopback address the server is bound to, so a DNS-rebound name
 * cannot reach it either.
 */
export function newToken(): string {
  return randomBytes(32).toString('base64url');
}

/** Cookies are not kept apart by port: two dashboards on one host need two names. */
export function cookieName(port: number): string {
  return `topas_dashboard_${port}`;
}

export function sessionCookie(port: number, token: string): string {
  return `${cookieName(port)}=${token}; HttpOnly; SameSite=Strict; Path=/`;
}

function same(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

export function cookies(header: string | undefined): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of (header ?? '').split(';')) {
    const i = part.indexOf('=');
    if (i > 0) out.set(part.slice(0, i).trim(), part.slice(i + 1).trim());
  }
  return out;
}

export type AuthResult = { ok: true; via: 'query' | 'header' | 'cookie' } | { ok: false; status: 401 | 403; reason: string };

export function checkRequest(req: IncomingMessage, url: URL, expected: { token: string; port: number }): AuthResult {
  const host = (req.headers.host ?? '').toLowerCase();
  if (host !== `127.0.0.1:${expected.port}` && host !== `localhost:${expected.port}`) return { ok: false, status: 403, reason: 'unexpected Host header' };
  const origin = req.headers.origin;
  if (origin !== undefined && origin !== `http://127.0.0.1:${expected.port}` && origin !== `http://localhost:${expected.port}`) return { ok: false, status: 403, reason: 'cross-origin request' };
  const q = url.searchParams.get('token');
  if (q !== null) return same(q, expected.token) ? { ok: true, via: 'query' } : { ok: false, status: 403, reason: 'wrong token' };
  const auth = req.headers.authorization;
  if (auth !== undefined) {
    const m = /^Bearer\s+(\S+)$/i.exec(auth);
    return m && same(m[1], expected.token) ? { ok: true, via: 'header' } : { ok: false, status: 403, reason: 'wrong token' };
  }
  const c = cookies(req.headers.cookie).get(cookieName(expected.port));
  if (c !== undefined) return same(c, expected.token) ? { ok: true, via: 'cookie' } : { ok: false, status: 403, reason: 'wrong token' };
  return { ok: false, status: 401, reason: 'no token: open the URL `topas dashboard` printed' };
}
