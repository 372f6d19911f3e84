import { TopasError } from '../errors';

/**
 * What a shaping proxy does to the traffic of one service. Plain data (structured-
 * cloneable) so it can cross worker threads and land in run records. Each kind is
 * one slot: a new change of a kind replaces the previous one of that kind, and
 * `reset` clears all slots.
 */
export interface ShapeState {
  /** Server-to-client chunks are delayed by delayMs ± jitterMs each, order kept (toxiproxy's latency toxic). */
  latency?: { delayMs: number; jitterMs: number };
  /** Per connection and per direction. */
  bandwidth?: { bytesPerSecond: number };
  /** New connections are reset with this probability. */
  loss?: { probability: number };
  /** New connections are reset on accept, existing ones are reset at once. */
  down?: boolean;
  /** Connections are accepted and kept open, nothing gets through in either direction. */
  timeout?: boolean;
  /** HTTP mode only: matching requests are answered by the proxy with `status` at `rate`. */
  httpFault?: { status: number; rate: number; path?: string };
}

/** One change as the Lua `shape` module asks for it (structured-cloneable). */
export type ShapeChange =
  | { kind: 'latency'; delayMs: number; jitterMs: number }
  | { kind: 'bandwidth'; bytesPerSecond: number }
  | { kind: 'loss'; probability: number }
  | { kind: 'down' }
  | { kind: 'timeout' }
  | { kind: 'http_fault'; status: number; rate: number; path?: string }
  | { kind: 'reset' };

export const NO_SHAPE: Readonly<ShapeState> = Object.freeze({});

/** The state after one change; never mutates `state`. Zero latency / zero loss clear their slot. */
export function applyShapeChange(state: ShapeState, change: ShapeChange): ShapeState {
  const next: ShapeState = { ...state };
  switch (change.kind) {
    case 'latency':
      if (change.delayMs === 0 && change.jitterMs === 0) delete next.latency;
      else next.latency = { delayMs: change.delayMs, jitterMs: change.jitterMs };
      break;
    case 'bandwidth':
      next.bandwidth = { bytesPerSecond: change.bytesPerSecond };
      break;
    case 'loss':
      if (change.probability === 0) delete next.loss;
      else next.loss = { probability: change.probability };
      break;
    case 'down':
      next.down = true;
      break;
    case 'timeout':
      next.timeout = true;
      break;
    case 'http_fault':
      next.httpFault = change.path === undefined ? { status: change.status, rate: change.rate } : { status: change.status, rate: change.rate, path: change.path };
      break;
    case 'reset':
      return {};
  }
  return next;
}

export function isUnshaped(state: ShapeState): boolean {
  return !state.latency && !state.bandwidth && !state.loss && !state.down && !state.timeout && !state.httpFault;
}

/** Short human text for reports and logs: `latency 200ms±20ms, loss 5%`. */
export function describeShape(state: ShapeState): string {
  const parts: string[] = [];
  if (state.down) parts.push('down');
  if (state.timeout) parts.push('timeout');
  if (state.latency) parts.push(`latency ${state.latency.delayMs}ms${state.latency.jitterMs ? `±${state.latency.jitterMs}ms` : ''}`);
  if (state.bandwidth) parts.push(`bandwidth ${formatBandwidth(state.bandwidth.bytesPerSecond)}`);
  if (state.loss) parts.push(`loss ${+(state.loss.probability * 100).toFixed(3)}%`);
  if (state.httpFault) {
    const f = state.httpFault;
    parts.push(`http_fault ${f.status} at ${+(f.rate * 100).toFixed(3)}%${f.path !== undefined ? ` on ${f.path}` : ''}`);
  }
  return parts.length ? parts.join(', ') : 'none';
}

export function formatBandwidth(bytesPerSecond: number): string {
  const bits = bytesPerSecond * 8;
  if (bits >= 1e9) return `${+(bits / 1e9).toFixed(3)}gbit`;
  if (bits >= 1e6) return `${+(bits / 1e6).toFixed(3)}mbit`;
  if (bits >= 1e3) return `${+(bits / 1e3).toFixed(3)}kbit`;
  return `${+bits.toFixed(3)}bit`;
}

// Units as tc(8) spells them: "bit" units are bits per second, the rest bytes
// per second ("kbps" = kilobytes); decimal multiples.
const BANDWIDTH_UNITS: Record<string, number> = {
  bit: 1 / 8,
  kbit: 1e3 / 8,
  mbit: 1e6 / 8,
  gbit: 1e9 / 8,
  b: 1,
  bps: 1,
  kb: 1e3,
  kbps: 1e3,
  mb: 1e6,
  mbps: 1e6,
  gb: 1e9,
  gbps: 1e9,
};

/**
 * "1mbit" -> 125000 bytes/s. Bit units (`bit`, `kbit`, `mbit`, `gbit`) are divided
 * by 8; `b`, `kb`/`kbps`, `mb`/`mbps`, `gb`/`gbps` are bytes (as in tc). An
 * optional "/s" is allowed. A bare number is bytes per second.
 * Throws TopasError INVALID_FLAGS naming `what`.
 */
export function parseBandwidth(value: string | number, what = 'bandwidth'): number {
  let bytes: number;
  if (typeof value === 'number') {
    bytes = value;
  } else if (typeof value === 'string') {
    const m = /^\s*(\d+(?:\.\d+)?|\.\d+)\s*([a-z]+)?(?:\/s)?\s*$/i.exec(value);
    const unit = m ? (m[2] ?? 'b').toLowerCase() : '';
    if (!m || !(unit in BANDWIDTH_UNITS)) {
      throw new TopasError('INVALID_FLAGS', `${what}: expected a rate like "1mbit", "500kbit" or "2mbps" (bytes), got "${value}"`, {
        hint: 'bit units: bit, kbit, mbit, gbit; byte units: b, kb/kbps, mb/mbps, gb/gbps',
      });
    }
    bytes = Number(m[1]) * BANDWIDTH_UNITS[unit];
  } else {
    throw new TopasError('INVALID_FLAGS', `${what}: expected a rate like "1mbit", got ${typeof value}`);
  }
  if (!Number.isFinite(bytes) || bytes < 1) {
    throw new TopasError('INVALID_FLAGS', `${what}: the rate must be at least 1 byte per second, got ${JSON.stringify(value)}`);
  }
  return bytes;
}

/** Path patterns of http_fault: a glob, or a Lua pattern when it looks like one. */
export interface PathMatcher {
  kind: 'glob' | 'lua';
  source: string;
  regex: RegExp;
  test(path: string): boolean;
}

/**
 * A pattern is a Lua pattern (string.find semantics: unanchored unless `^`/`$`)
 * when it starts with `^`, ends with an unescaped `$` or contains `%`; otherwise
 * it is a glob over the whole path: `*` matches within one segment, `**` across
 * segments, `?` one character, `[abc]` a set. The query string is never matched.
 */
export function compilePathPattern(pattern: string, what = 'path'): PathMatcher {
  if (typeof pattern !== 'string' || pattern.length === 0) {
    throw new TopasError('INVALID_FLAGS', `${what}: expected a non-empty path pattern`);
  }
  const lua = pattern.startsWith('^') || pattern.includes('%') || (pattern.endsWith('$') && !pattern.endsWith('%$'));
  const regex = lua ? luaPatternToRegExp(pattern, what) : globToRegExp(pattern);
  return { kind: lua ? 'lua' : 'glob', source: pattern, regex, test: (p) => regex.test(p) };
}

function escapeRegExpChar(c: string): string {
  return /[\\^$.*+?()[\]{}|/-]/.test(c) ? `\\${c}` : c;
}

function globToRegExp(glob: string): RegExp {
  let out = '^';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i];
    if (c === '*') {
      if (glob[i + 1] === '*') {
        out += '.*';
        i++;
      } else out += '[^/]*';
    } else if (c === '?') out += '[^/]';
    else if (c === '[') {
      const end = glob.indexOf(']', i + 2);
      if (end < 0) out += '\\[';
      else {
        let set = glob.slice(i + 1, end).replace(/\\/g, '\\\\');
        if (set.startsWith('!')) set = `^${set.slice(1)}`;
        out += `[${set}]`;
        i = end;
      }
    } else out += escapeRegExpChar(c);
  }
  return new RegExp(`${out}$`);
}

const LUA_CLASSES: Record<string, string> = {
  a: 'A-Za-z',
  d: '0-9',
  l: 'a-z',
  s: ' \\t\\n\\r\\f\\v',
  u: 'A-Z',
  w: 'A-Za-z0-9',
  x: 'A-Fa-f0-9',
  p: '!-/:-@\\[-`{-~',
  c: '\\x00-\\x1f\\x7f',
  g: '!-~',
};

function luaClass(letter: string, inSet: boolean): string | undefined {
  const body = LUA_CLASSES[letter.toLowerCase()];
  if (body === undefined) return undefined;
  const negated = letter !== letter.toLowerCase();
  if (inSet) {
    if (negated) return undefined;
    return body;
  }
  return negated ? `[^${body}]` : `[${body}]`;
}

function luaPatternToRegExp(pattern: string, what: string): RegExp {
  const bad = (msg: string): never => {
    throw new TopasError('INVALID_FLAGS', `${what}: bad Lua pattern "${pattern}": ${msg}`);
  };
  let out = '';
  let i = 0;
  // quantifiers only follow a single-character item, as in Lua
  let lastWasItem = false;
  if (pattern.startsWith('^')) {
    out += '^';
    i = 1;
  }
  while (i < pattern.length) {
    const c = pattern[i];
    if (c === '$' && i === pattern.length - 1) {
      out += '$';
      i++;
      lastWasItem = false;
      continue;
    }
    if (lastWasItem && (c === '*' || c === '+' || c === '?' || c === '-')) {
      out += c === '-' ? '*?' : c;
      i++;
      lastWasItem = false;
      continue;
    }
    if (c === '%') {
      const n = pattern[i + 1];
      if (n === undefined) bad('ends with "%"');
      if (n === 'b' || n === 'f' || /[0-9]/.test(n)) bad(`"%${n}" is not supported here`);
      const cls = /[a-zA-Z]/.test(n) ? luaClass(n, false) : escapeRegExpChar(n);
      if (cls === undefined) bad(`unknown class "%${n}"`);
      out += cls;
      i += 2;
      lastWasItem = true;
      continue;
    }
    if (c === '[') {
      let j = i + 1;
      let set = '';
      if (pattern[j] === '^') {
        set += '^';
        j++;
      }
      let first = true;
      while (j < pattern.length && (pattern[j] !== ']' || first)) {
        const d = pattern[j];
        first = false;
        if (d === '%') {
          const n = pattern[j + 1];
          if (n === undefined) bad('ends with "%"');
          const cls = /[a-zA-Z]/.test(n) ? luaClass(n, true) : `\\${n}`;
          if (cls === undefined) bad(`class "%${n}" is not supported inside a set`);
          set += cls;
          j += 2;
        } else {
          set += d === '\\' || d === ']' || d === '[' ? `\\${d}` : d;
          j++;
        }
      }
      if (j >= pattern.length) bad('missing "]"');
      out += `[${set}]`;
      i = j + 1;
      lastWasItem = true;
      continue;
    }
    if (c === '.') {
      out += '[\\s\\S]';
      lastWasItem = true;
    } else if (c === '(') {
      out += '(?:';
      lastWasItem = false;
    } else if (c === ')') {
      out += ')';
      lastWasItem = false;
    } else {
      out += escapeRegExpChar(c);
      lastWasItem = true;
    }
    i++;
  }
  try {
    return new RegExp(out);
  } catch (err) {
    return bad((err as Error).message);
  }
}

/** The path part of a request target (`/a/b?x=1` -> `/a/b`, `http://h:1/a` -> `/a`). */
export function requestPath(target: string): string {
  let t = target;
  if (!t.startsWith('/')) {
    const scheme = t.indexOf('://');
    if (scheme >= 0) {
      const slash = t.indexOf('/', scheme + 3);
      t = slash < 0 ? '/' : t.slice(slash);
    }
  }
  const q = t.search(/[?#]/);
  return q < 0 ? t : t.slice(0, q);
}
