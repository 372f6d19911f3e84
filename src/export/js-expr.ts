import type { Expr } from './model';

/**
 * Lua expressions of the flow model as JavaScript (k6 scripts, Artillery
 * processors). `resp(name)` says how a response local is read in the target:
 * k6 keeps `http.Response` objects in locals, Artillery keeps captured fields
 * in `context.vars`.
 */
export interface JsStyle {
  variable(name: string): string;
  status(resp: string): string;
  body(resp: string): string;
  header(resp: string, name: string): string;
  json(resp: string, path: Array<string | number>): string;
  env(name: string): string;
}

export function js(e: Expr, s: JsStyle): string {
  switch (e.k) {
    case 'str':
      return JSON.stringify(e.v);
    case 'num':
      return String(e.v);
    case 'bool':
      return String(e.v);
    case 'nil':
      return 'undefined';
    case 'var':
      return s.variable(e.name);
    case 'env':
      return `(${s.env(e.name)} ?? ${e.dflt ? js(e.dflt, s) : 'undefined'})`;
    case 'concat':
      return '`' + e.parts.map((p) => (p.k === 'str' ? p.v.replace(/[`\\$]/g, (c) => `\\${c}`) : '${' + js(p, s) + '}')).join('') + '`';
    case 'status':
      return s.status(e.resp);
    case 'body':
      return s.body(e.resp);
    case 'header':
      return s.header(e.resp, e.name);
    case 'json':
      return s.json(e.resp, e.path);
    case 'bin': {
      if ((e.op === '==' || e.op === '~=') && (e.l.k === 'nil' || e.r.k === 'nil')) return `(${js(e.l, s)} ${e.op === '==' ? '==' : '!='} ${js(e.r, s)})`;
      const op = { '==': '===', '~=': '!==', and: '&&', or: '||' }[e.op as string] ?? e.op;
      return `(${js(e.l, s)} ${op} ${js(e.r, s)})`;
    }
    case 'not':
      return `!${js(e.e, s)}`;
    case 'tostring':
      return `String(${js(e.e, s)})`;
    case 'table': {
      if (e.list.length && !e.fields.length) return `[${e.list.map((x) => js(x, s)).join(', ')}]`;
      return `{ ${e.fields.map((f) => `${JSON.stringify(f.key)}: ${js(f.value, s)}`).join(', ')} }`;
    }
  }
}

/** `{"a":1}`-style object literal of name = value pairs. */
export function jsPairs(pairs: Array<{ key: string; value: Expr }>, s: JsStyle): string {
  return `{ ${pairs.map((p) => `${JSON.stringify(p.key)}: ${js(p.value, s)}`).join(', ')} }`;
}

/** A JS identifier for a Lua local (Lua names are valid JS names except reserved words). */
export function jsName(name: string): string {
  return JS_RESERVED.has(name) ? `${name}_` : name;
}
const JS_RESERVED = new Set(['class', 'const', 'default', 'delete', 'export', 'import', 'new', 'switch', 'this', 'var', 'void', 'with', 'yield', 'let', 'static', 'super', 'typeof', 'instanceof', 'catch', 'try', 'case', 'enum', 'await', 'http', 'check', 'sleep', 'fail', 'options']);
