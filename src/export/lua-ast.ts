import type { Problem } from '../errors';

/**
 * The Lua syntax tree, from luaparse (Lua 5.3 grammar: integer division,
 * bitwise operators and goto parse; Lua 5.4's `<const>`/`<close>` attributes
 * do not, so they are blanked out before parsing, keeping every column).
 * Only the node fields the translators read are typed here.
 */
// eslint-disable-next-line @typescript-eslint/no-require-imports
const luaparse = require('luaparse') as { parse(src: string, opts: Record<string, unknown>): LuaChunk };

export interface Loc {
  start: { line: number; column: number };
  end: { line: number; column: number };
}

export interface LuaNode {
  type: string;
  loc?: Loc;
  [key: string]: any; // eslint-disable-line @typescript-eslint/no-explicit-any
}

export interface LuaChunk extends LuaNode {
  type: 'Chunk';
  body: LuaNode[];
}

export function parseLua(source: string, rel: string): { chunk?: LuaChunk; problems: Problem[] } {
  const blanked = source.replace(/<\s*(const|close)\s*>/g, (m) => ' '.repeat(m.length));
  try {
    return { chunk: luaparse.parse(blanked, { luaVersion: '5.3', locations: true, ranges: false, comments: false, scope: false, encodingMode: 'x-user-defined' }), problems: [] };
  } catch (err) {
    const e = err as Error & { line?: number };
    return { problems: [{ path: `${rel}:${e.line ?? 1}`, message: e.message.replace(/^\[\d+:\d+\]\s*/, '') }] };
  }
}

/** A string literal's value (luaparse leaves `value` null and keeps `raw`). */
export function stringValue(node: LuaNode): string {
  if (typeof node.value === 'string') return node.value;
  const raw: string = node.raw;
  const long = /^\[(=*)\[\n?([\s\S]*)\]\1\]$/.exec(raw);
  if (long) return long[2];
  const body = raw.slice(1, -1);
  return body.replace(/\\(u\{([0-9a-fA-F]+)\}|x([0-9a-fA-F]{2})|(\d{1,3})|z\s*|\r?\n|.)/g, (_all, esc: string, u?: string, x?: string, d?: string) => {
    if (u) return String.fromCodePoint(parseInt(u, 16));
    if (x) return String.fromCharCode(parseInt(x, 16));
    if (d) return String.fromCharCode(Number(d));
    if (esc.startsWith('z')) return '';
    const map: Record<string, string> = { n: '\n', t: '\t', r: '\r', a: '\x07', b: '\b', f: '\f', v: '\v', '\\': '\\', '"': '"', "'": "'", '\n': '\n', '\r\n': '\n' };
    return map[esc] ?? esc;
  });
}
