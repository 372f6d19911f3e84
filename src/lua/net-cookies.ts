import type { CookieJar } from 'tough-cookie';

/**
 * A browser-like cookie jar for one scenario (one per VU under load), made
 * on the first response that sets a cookie: until then a request pays one
 * `undefined` check. Parsing and matching (domain, path, expiry, Max-Age,
 * Secure, host-only, public suffixes) are tough-cookie's.
 */
export class NetCookies {
  private jar: CookieJar | undefined;
  private count = 0;

  /** the Cookie header for a request to `url`, or undefined */
  header(url: string): string | undefined {
    if (this.jar === undefined || this.count === 0) return undefined;
    const s = this.jar.getCookieStringSync(url);
    return s === '' ? undefined : s;
  }

  /** Stores the Set-Cookie lines of a raw header block (`Name: value` lines joined by CRLF). */
  fromRawHeaders(url: string, raw: string): void {
    // most responses set no cookie: one indexOf before any parsing
    if (raw.indexOf('ookie') < 0) return;
    let pos = 0;
    while (pos < raw.length) {
      let next = raw.indexOf('\r\n', pos);
      if (next < 0) next = raw.length;
      const colon = raw.indexOf(':', pos);
      if (colon > pos && colon < next && raw.slice(pos, colon).trim().toLowerCase() === 'set-cookie') this.set(url, raw.slice(colon + 1, next).trim());
      pos = next + 2;
    }
  }

  private set(url: string, setCookie: string): void {
    if (this.jar === undefined) {
      const { CookieJar } = require('tough-cookie') as typeof import('tough-cookie');
      // looseMode: a bare `value` cookie as browsers take it; loopback and service names are hosts like any other
      this.jar = new CookieJar(undefined, { looseMode: true, allowSpecialUseDomain: true, rejectPublicSuffixes: true });
    }
    // an invalid or foreign-domain cookie is ignored, as a browser does
    this.jar.setCookieSync(setCookie, url, { ignoreError: true });
    this.count++;
  }

  /** name -> value of the cookies a request to `url` would send, or of every cookie in the jar */
  list(url?: string): Record<string, string> {
    const out: Record<string, string> = {};
    if (this.jar === undefined) return out;
    const cookies = url !== undefined ? this.jar.getCookiesSync(url) : (this.jar.serializeSync()?.cookies ?? []);
    const now = Date.now();
    for (const c of cookies) {
      const exp = c.expires;
      if (exp instanceof Date && exp.getTime() <= now) continue;
      if (typeof exp === 'string' && exp !== 'Infinity' && Date.parse(exp) <= now) continue;
      const created = c.creation instanceof Date ? c.creation.getTime() : typeof c.creation === 'string' ? Date.parse(c.creation) : undefined;
      if (typeof c.maxAge === 'number' && created !== undefined && created + c.maxAge * 1000 <= now) continue;
      if (typeof c.key === 'string') out[c.key] = String(c.value ?? '');
    }
    return out;
  }

  clear(): void {
    this.jar?.removeAllCookiesSync();
    this.count = 0;
  }
}
