/**
 * Recorded or described HTTP traffic -> a topas Lua load scenario: requests
 * in order, each checked for the status it got, think times between them,
 * one `env()`-overridable base URL per origin, and correlation: a value taken
 * from an earlier JSON response and sent again later becomes a local read
 * from that response.
 */

export interface ImportedCheck {
  name: string;
  /** the condition in Lua, with `$r` for the response local */
  cond: string;
}

export interface ImportedRequest {
  /** request name in the load metrics */
  name: string;
  method: string;
  url: string;
  headers: Array<[string, string]>;
  body?: { text: string; mimeType?: string };
  /** the status the recording got (a check) */
  status?: number;
  /** the JSON response text, for correlation */
  responseText?: string;
  /** think time before this request, ms */
  thinkMs?: number;
  checks?: ImportedCheck[];
  /** explicit correlations from the source (Postman `pm.environment.set(name, pm.response.json().path)`) */
  sets?: Array<{ variable: string; path: Array<string | number> }>;
}

export interface WriteOptions {
  header: string[];
  /** variables the requests use as `{{name}}` and nobody sets: top-level `env(name, default)` */
  variables?: Record<string, string>;
  durationS?: number;
}

type Seg = { lit: string } | { v: string };

const SKIP_HEADERS = /^(:|host$|content-length$|connection$|accept-encoding$|cookie$|user-agent$|sec-|upgrade-insecure-requests$|pragma$|cache-control$|origin$|referer$|keep-alive$|te$|priority$|if-none-match$|if-modified-since$)/i;
const TOKEN_KEY = /(^|_|-)(id|token|key|session|csrf|uuid|code|ref)$|token|session/i;

export function writeLuaScenario(requests: ImportedRequest[], opts: WriteOptions): string {
  const out: string[] = [...opts.header.map((h) => `-- ${h}`), 'local net = require("net")'];
  // one base per origin, overridable with --env BASE_URL=... (then BASE_URL_2, ...)
  const origins = new Map<string, string>();
  for (const r of requests) {
    const o = originOf(r.url);
    if (o && !origins.has(o)) origins.set(o, origins.size === 0 ? 'base' : `base_${origins.size + 1}`);
  }
  for (const [o, v] of origins) out.push(`local ${v} = env(${lua(v === 'base' ? 'BASE_URL' : `BASE_URL_${v.slice(5)}`)}, ${lua(o)})`);
  const vars = opts.variables ?? {};
  const varNames = new Map<string, string>();
  for (const [name, dflt] of Object.entries(vars)) {
    const id = uniqueName(luaIdent(name), new Set([...origins.values(), ...varNames.values()]));
    varNames.set(name, id);
    out.push(`local ${id} = env(${lua(name)}, ${lua(dflt)})${dflt === '' ? ' -- set by a Postman script: give it with --env' : ''}`);
  }
  out.push(
    '',
    'options = {',
    '  rate = 1,',
    `  duration = ${lua(`${opts.durationS ?? 10}s`)},`,
    '  max_vus = 10,',
    '  thresholds = {',
    '    http_req_failed = { "rate<0.01" },',
    '    checks = { "rate>0.99" },',
    '  },',
    '}',
    '',
    'function iteration(ctx)',
  );
  const used = new Set<string>([...origins.values(), ...varNames.values(), 'net', 'ctx']);
  /** value -> local name, for correlation */
  const known: Array<{ value: string; local: string }> = [];
  requests.forEach((r, i) => {
    const resp = `r${i + 1}`;
    used.add(resp);
    if (r.thinkMs && r.thinkMs >= 50) out.push(`  sleep(${lua(`${Math.round(r.thinkMs / 10) * 10}ms`)})`);
    const segs = (s: string) => substitute(s, known, varNames, origins);
    const urlExpr = concat(segs(r.url));
    const opts: string[] = [];
    const headers = r.headers.filter(([k]) => !SKIP_HEADERS.test(k));
    let jsonBody: unknown;
    if (r.body?.text !== undefined && /json/i.test(r.body.mimeType ?? '') ) {
      try {
        jsonBody = JSON.parse(r.body.text.replace(/\{\{[^}]+\}\}/g, (m) => m.replace(/"/g, '')));
      } catch {
        jsonBody = undefined;
      }
    }
    const keptHeaders = headers.filter(([k, v]) => !(jsonBody !== undefined && /^content-type$/i.test(k) && /json/i.test(v)));
    if (keptHeaders.length) opts.push(`headers = { ${keptHeaders.map(([k, v]) => `[${lua(k.toLowerCase())}] = ${concat(segs(v))}`).join(', ')} }`);
    opts.push(`name = ${lua(r.name)}`);
    const m = r.method.toLowerCase();
    let call: string;
    const withBody = m === 'post' || m === 'put' || m === 'patch';
    let body = 'nil';
    if (r.body?.text !== undefined && r.body.text !== '') body = jsonBody !== undefined && luaTableable(jsonBody) ? luaValue(jsonBody, segs) : concat(segs(r.body.text));
    if (['get', 'post', 'put', 'patch', 'delete', 'head'].includes(m)) {
      call = withBody ? `net.${m}(${urlExpr}, ${body}, { ${opts.join(', ')} })` : `net.${m}(${urlExpr}, { ${opts.join(', ')} })`;
    } else {
      call = `net.request{ method = ${lua(r.method.toUpperCase())}, url = ${urlExpr}${body !== 'nil' ? `, body = ${body}` : ''}, ${opts.join(', ')} }`;
    }
    out.push(`  local ${resp} = ${call}`);
    if (r.status !== undefined) out.push(`  check(${lua(`${r.name} is ${r.status}`)}, ${resp}.code == ${r.status})`);
    for (const c of r.checks ?? []) out.push(`  check(${lua(c.name)}, ${c.cond.replace(/\$r\b/g, resp)})`);
    // correlation: explicit sets first, then every token-like value of the JSON response
    for (const s of r.sets ?? []) {
      const local = uniqueName(luaIdent(s.variable), used);
      used.add(local);
      varNames.set(s.variable, local);
      out.push(`  local ${local} = ${resp}:json()${s.path.map((p) => (typeof p === 'number' ? `[${p + 1}]` : /^[A-Za-z_]\w*$/.test(p) ? `.${p}` : `[${lua(p)}]`)).join('')}`);
    }
    if (r.responseText) {
      let json: unknown;
      try {
        json = JSON.parse(r.responseText);
      } catch {
        json = undefined;
      }
      if (json !== undefined) {
        const later = requests.slice(i + 1).map((x) => [x.url, ...x.headers.map((h) => h[1]), x.body?.text ?? ''].join('\n')).join('\n');
        for (const t of tokens(json)) {
          if (known.some((k) => k.value === t.value) || !later.includes(t.value)) continue;
          const local = uniqueName(luaIdent(t.key), used);
          used.add(local);
          known.push({ value: t.value, local });
          out.push(`  local ${local} = ${resp}:json()${t.path.map((p) => (typeof p === 'number' ? `[${p + 1}]` : /^[A-Za-z_]\w*$/.test(p) ? `.${p}` : `[${lua(p)}]`)).join('')}`);
        }
      }
    }
  });
  out.push('end', '');
  return out.join('\n');
}

/** Token-like strings of a JSON value: long enough not to match by chance, or under a key that names an id or token. */
function tokens(json: unknown): Array<{ value: string; key: string; path: Array<string | number> }> {
  const found: Array<{ value: string; key: string; path: Array<string | number> }> = [];
  const walk = (v: unknown, path: Array<string | number>, key: string) => {
    if (found.length > 200 || path.length > 6) return;
    if (typeof v === 'string') {
      if (!/\s/.test(v) && (v.length >= 8 || (TOKEN_KEY.test(key) && v.length >= 4))) found.push({ value: v, key, path });
    } else if (Array.isArray(v)) v.slice(0, 20).forEach((x, i) => walk(x, [...path, i], key));
    else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) walk(x, [...path, k], k);
  };
  walk(json, [], 'value');
  return found;
}

function originOf(url: string): string | undefined {
  const m = /^(https?:\/\/[^/?#]+)/i.exec(url);
  return m?.[1];
}

function substitute(s: string, known: Array<{ value: string; local: string }>, vars: Map<string, string>, origins: Map<string, string>): Seg[] {
  let segs: Seg[] = [{ lit: s }];
  const o = originOf(s);
  if (o && s.startsWith(o) && origins.has(o)) segs = [{ v: origins.get(o)! }, { lit: s.slice(o.length) }];
  const split = (needle: string, local: string) => {
    segs = segs.flatMap((g) => {
      if (!('lit' in g) || !g.lit.includes(needle)) return [g];
      const parts = g.lit.split(needle);
      return parts.flatMap((p, i) => (i === 0 ? [{ lit: p }] : [{ v: local }, { lit: p }]));
    });
  };
  for (const [name, local] of vars) split(`{{${name}}}`, local);
  for (const k of [...known].sort((a, b) => b.value.length - a.value.length)) split(k.value, k.local);
  return segs.filter((g) => !('lit' in g) || g.lit !== '');
}

function concat(segs: Seg[]): string {
  if (!segs.length) return '""';
  return segs.map((g) => ('lit' in g ? lua(g.lit) : g.v)).join(' .. ');
}

function luaTableable(v: unknown): boolean {
  if (v === null) return false;
  if (Array.isArray(v)) return v.length > 0 && v.every(luaTableable);
  if (typeof v === 'object') return Object.keys(v as object).length > 0 && Object.values(v as object).every(luaTableable);
  return true;
}

function luaValue(v: unknown, segs: (s: string) => Seg[]): string {
  if (typeof v === 'string') return concat(segs(v));
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (Array.isArray(v)) return `{ ${v.map((x) => luaValue(x, segs)).join(', ')} }`;
  return `{ ${Object.entries(v as object)
    .map(([k, x]) => `${/^[A-Za-z_]\w*$/.test(k) && !LUA_KEYWORDS.has(k) ? k : `[${lua(k)}]`} = ${luaValue(x, segs)}`)
    .join(', ')} }`;
}

export function lua(s: string): string {
  return JSON.stringify(s).replace(/\\u([0-9a-fA-F]{4})/g, (_, h: string) => `\\u{${h}}`);
}

const LUA_KEYWORDS = new Set(['and', 'break', 'do', 'else', 'elseif', 'end', 'false', 'for', 'function', 'goto', 'if', 'in', 'local', 'nil', 'not', 'or', 'repeat', 'return', 'then', 'true', 'until', 'while']);

function luaIdent(s: string): string {
  let id = s.replace(/[^A-Za-z0-9_]/g, '_').replace(/^(\d)/, '_$1');
  if (!id || LUA_KEYWORDS.has(id)) id = `v_${id}`;
  return id;
}

function uniqueName(base: string, used: Set<string>): string {
  const reserved = new Set(['net', 'json', 'env', 'check', 'sleep', 'options', 'iteration', 'base']);
  let n = base;
  for (let i = 2; used.has(n) || reserved.has(n); i++) n = `${base}_${i}`;
  return n;
}
