import { parseDurationMs } from '../util/duration';
import { stringValue, type LuaChunk, type LuaNode } from './lua-ast';
import type { Expr, FlowModel, HttpMethod, RequestStmt, Skipped, Stmt } from './model';

/**
 * Reads a load script's syntax tree into the flow model (./model.ts): what
 * the targets can print, and what they cannot, with its line.
 */

const UNSUPPORTED_MODULES: Record<string, string> = {
  db: 'db (SQL state)',
  sut: 'sut (system under test control)',
  shape: 'shape (traffic shaping)',
  sync: 'sync (coordination between instances)',
  postman: 'postman.run / postman.replay',
  metrics: 'custom metrics',
};
const METHODS: Record<string, HttpMethod> = { get: 'GET', post: 'POST', put: 'PUT', patch: 'PATCH', delete: 'DELETE', head: 'HEAD' };

class Unsupported extends Error {
  constructor(
    readonly node: LuaNode,
    readonly what: string,
  ) {
    super(what);
  }
}

const line = (n: LuaNode) => n.loc?.start.line ?? 0;

export function buildFlowModel(chunk: LuaChunk): FlowModel {
  const model: FlowModel = { constants: [], options: undefined, optionsLine: 0, flow: [], hasIteration: false, skipped: [], responses: new Set() };
  /** local name -> module it was required as */
  const modules = new Map<string, string>();
  const skip = (node: LuaNode, what: string) => model.skipped.push({ line: line(node), what });
  const b = new FlowBuilder(modules, model);

  for (const st of chunk.body) {
    try {
      if (st.type === 'LocalStatement' && st.init.length === 1 && st.variables.length === 1) {
        const init = st.init[0];
        const name: string = st.variables[0].name;
        const req = requireName(init);
        if (req !== undefined) {
          if (req === 'net') modules.set(name, 'net');
          else if (UNSUPPORTED_MODULES[req]) modules.set(name, req);
          else skip(st, `require("${req}") (a module the export cannot follow)`);
          continue;
        }
        model.constants.push({ name, value: b.expr(init), line: line(st) });
        continue;
      }
      if (st.type === 'AssignmentStatement' && st.variables.length === 1 && st.variables[0].type === 'Identifier' && st.variables[0].name === 'options') {
        model.optionsLine = line(st);
        model.options = literal(st.init[0]);
        continue;
      }
      if (st.type === 'FunctionDeclaration' && st.identifier?.type === 'Identifier') {
        const fname: string = st.identifier.name;
        if (fname === 'iteration') {
          b.ctxName = st.parameters[0]?.name;
          model.hasIteration = true;
          model.flow = b.block(st.body);
          continue;
        }
        if (fname === 'setup' || fname === 'teardown') {
          skip(st, `${fname}() (runs once around the load; export the HTTP flow of iteration() only)`);
          continue;
        }
        skip(st, `function ${fname} (arbitrary Lua)`);
        continue;
      }
      skip(st, describe(st));
    } catch (e) {
      if (e instanceof Unsupported) skip(e.node, e.what);
      else throw e;
    }
  }
  for (const s of b.skipped) model.skipped.push(s);
  model.skipped.sort((x, y) => x.line - y.line);
  for (const r of b.responses) model.responses.add(r);
  return model;
}

function requireName(n: LuaNode): string | undefined {
  if ((n.type === 'CallExpression' || n.type === 'StringCallExpression') && n.base.type === 'Identifier' && n.base.name === 'require') {
    const arg = n.type === 'StringCallExpression' ? n.argument : n.arguments[0];
    if (arg?.type === 'StringLiteral') return stringValue(arg);
  }
  return undefined;
}

function describe(n: LuaNode): string {
  switch (n.type) {
    case 'CallStatement':
      return `call ${calleeText(n.expression)} (arbitrary Lua)`;
    case 'AssignmentStatement':
      return 'assignment to a global (arbitrary Lua)';
    case 'WhileStatement':
    case 'RepeatStatement':
      return 'while/repeat loop (only numeric for loops translate)';
    case 'ForGenericStatement':
      return 'for ... in loop (only numeric for loops translate)';
    case 'GotoStatement':
    case 'LabelStatement':
      return 'goto/label';
    case 'ReturnStatement':
      return 'return';
    default:
      return `${n.type} (arbitrary Lua)`;
  }
}

function calleeText(n: LuaNode): string {
  const base = n.type === 'CallExpression' || n.type === 'StringCallExpression' || n.type === 'TableCallExpression' ? n.base : n;
  if (base.type === 'Identifier') return `${base.name}()`;
  if (base.type === 'MemberExpression') {
    const parts: string[] = [];
    let m: LuaNode = base;
    while (m.type === 'MemberExpression') {
      parts.unshift(m.identifier.name);
      m = m.base;
    }
    if (m.type === 'Identifier') parts.unshift(m.name);
    return `${parts.join('.')}()`;
  }
  return 'a function';
}

/** A literal table/number/string/bool as plain data (for `options`). */
export function literal(n: LuaNode, what = 'options must be a literal table (computed options do not translate)'): unknown {
  switch (n.type) {
    case 'StringLiteral':
      return stringValue(n);
    case 'NumericLiteral':
      return n.value;
    case 'BooleanLiteral':
      return n.value;
    case 'NilLiteral':
      return undefined;
    case 'UnaryExpression':
      if (n.operator === '-') {
        const v = literal(n.argument, what);
        if (typeof v === 'number') return -v;
      }
      break;
    case 'TableConstructorExpression': {
      const list: unknown[] = [];
      const rec: Record<string, unknown> = {};
      for (const f of n.fields) {
        if (f.type === 'TableValue') list.push(literal(f.value, what));
        else if (f.type === 'TableKeyString') rec[f.key.name] = literal(f.value, what);
        else if (f.type === 'TableKey') rec[String(literal(f.key, what))] = literal(f.value, what);
      }
      if (list.length && !Object.keys(rec).length) return list;
      list.forEach((v, i) => (rec[String(i + 1)] = v));
      return rec;
    }
  }
  throw new Unsupported(n, what);
}

class FlowBuilder {
  ctxName?: string;
  readonly skipped: Skipped[] = [];
  readonly responses = new Set<string>();
  /** locals known in the flow (constants and earlier locals) */
  private readonly locals = new Set<string>();

  constructor(
    private readonly modules: Map<string, string>,
    model: FlowModel,
  ) {
    this.model = model;
  }
  private readonly model: FlowModel;

  block(body: LuaNode[]): Stmt[] {
    const out: Stmt[] = [];
    for (const st of body) {
      try {
        this.stmt(st, out);
      } catch (e) {
        if (e instanceof Unsupported) this.skipped.push({ line: line(e.node), what: e.what });
        else throw e;
      }
    }
    return out;
  }

  private stmt(st: LuaNode, out: Stmt[]): void {
    if (st.type === 'LocalStatement') {
      if (st.variables.length !== 1 || st.init.length !== 1) throw new Unsupported(st, 'multiple assignment (arbitrary Lua)');
      const name: string = st.variables[0].name;
      const init = st.init[0];
      const req = this.request(init);
      if (req) {
        req.resp = name;
        this.responses.add(name);
        this.locals.add(name);
        out.push(req);
        return;
      }
      const value = this.expr(init);
      this.locals.add(name);
      out.push({ k: 'local', line: line(st), name, value });
      return;
    }
    if (st.type === 'CallStatement') {
      const call = st.expression;
      const req = this.request(call);
      if (req) {
        out.push(req);
        return;
      }
      const callee = call.base;
      if (callee.type === 'Identifier') {
        const args: LuaNode[] = call.type === 'StringCallExpression' ? [call.argument] : call.arguments ?? [];
        if (callee.name === 'check' && args.length === 2 && args[0].type === 'StringLiteral') {
          out.push({ k: 'check', line: line(st), name: stringValue(args[0]), cond: this.expr(args[1]) });
          return;
        }
        if (callee.name === 'sleep' && args.length === 1) {
          const v = literal(args[0], 'sleep with a computed duration');
          if (typeof v !== 'number' && typeof v !== 'string') throw new Unsupported(st, 'sleep with a computed duration');
          out.push({ k: 'sleep', line: line(st), seconds: parseDurationMs(v) / 1000 });
          return;
        }
        if (callee.name === 'assert' && args.length >= 1) {
          out.push({ k: 'assert', line: line(st), cond: this.expr(args[0]), message: args[1]?.type === 'StringLiteral' ? stringValue(args[1]) : `assertion failed (line ${line(st)})` });
          return;
        }
        if (['print', 'log'].includes(callee.name)) throw new Unsupported(st, `${callee.name}() (logging is not exported)`);
      }
      // expect(x):to_be(v)
      if (callee.type === 'MemberExpression' && callee.indexer === ':' && callee.base.type === 'CallExpression' && callee.base.base.type === 'Identifier' && callee.base.base.name === 'expect') {
        const actual = this.expr(callee.base.arguments[0]);
        const matcher: string = callee.identifier.name;
        const args: LuaNode[] = call.arguments ?? [];
        const exp = args[0] ? this.expr(args[0]) : undefined;
        const cond: Expr | undefined =
          matcher === 'to_be' || matcher === 'to_equal'
            ? exp && { k: 'bin', op: '==', l: actual, r: exp }
            : matcher === 'to_be_greater_than'
              ? exp && { k: 'bin', op: '>', l: actual, r: exp }
              : matcher === 'to_be_less_than'
                ? exp && { k: 'bin', op: '<', l: actual, r: exp }
                : matcher === 'to_be_truthy'
                  ? actual
                  : matcher === 'to_be_nil'
                    ? { k: 'bin', op: '==', l: actual, r: { k: 'nil' } }
                    : undefined;
        if (!cond || (exp && (exp.k === 'table'))) throw new Unsupported(st, `expect(...):${matcher} (only to_be, to_equal on plain values, to_be_greater_than, to_be_less_than, to_be_truthy, to_be_nil translate)`);
        out.push({ k: 'assert', line: line(st), cond, message: `expect(...):${matcher} failed (line ${line(st)})` });
        return;
      }
      const mod = this.moduleOf(callee);
      if (mod && mod !== 'net') throw new Unsupported(st, `${calleeText(call)}: ${UNSUPPORTED_MODULES[mod] ?? mod} has no equivalent`);
      if (mod === 'net') throw new Unsupported(st, `${calleeText(call)} has no equivalent (only net.get/post/put/patch/delete/head/request translate)`);
      throw new Unsupported(st, describe(st));
    }
    if (st.type === 'IfStatement') {
      let elseBody: Stmt[] = [];
      const clauses: LuaNode[] = st.clauses;
      // fold elseif chains from the end
      for (let i = clauses.length - 1; i >= 0; i--) {
        const c = clauses[i];
        if (c.type === 'ElseClause') elseBody = this.block(c.body);
        else elseBody = [{ k: 'if', line: line(c), cond: this.expr(c.condition), then: this.block(c.body), else: elseBody }];
      }
      out.push(...elseBody);
      return;
    }
    if (st.type === 'ForNumericStatement') {
      const bounds = 'for loop with computed bounds or a step (only `for i = A, B` with numbers translates)';
      const from = literal(st.start, bounds);
      const to = literal(st.end, bounds);
      if (typeof from !== 'number' || typeof to !== 'number' || (st.step && literal(st.step, bounds) !== 1)) throw new Unsupported(st, 'for loop with computed bounds or a step (only `for i = A, B` with numbers translates)');
      this.locals.add(st.variable.name);
      out.push({ k: 'for', line: line(st), var: st.variable.name, from, to, body: this.block(st.body) });
      return;
    }
    throw new Unsupported(st, describe(st));
  }

  private moduleOf(callee: LuaNode): string | undefined {
    let m = callee;
    while (m.type === 'MemberExpression') m = m.base;
    if (m.type === 'Identifier') return this.modules.get(m.name) ?? (UNSUPPORTED_MODULES[m.name] ? m.name : undefined);
    return undefined;
  }

  /** net.get(url [, opts]), net.post(url, body [, opts]), ..., net.request{...} */
  private request(call: LuaNode): RequestStmt | undefined {
    if (call.type !== 'CallExpression' && call.type !== 'TableCallExpression') return undefined;
    const callee = call.base;
    if (callee.type !== 'MemberExpression' || callee.indexer !== '.' || this.moduleOf(callee) !== 'net' || callee.base.type !== 'Identifier') return undefined;
    const fn: string = callee.identifier.name;
    const args: LuaNode[] = call.type === 'TableCallExpression' ? [call.arguments] : call.arguments;
    let method: HttpMethod;
    let urlNode: LuaNode;
    let bodyNode: LuaNode | undefined;
    let optsNode: LuaNode | undefined;
    if (fn === 'request') {
      const t = args[0];
      if (t?.type !== 'TableConstructorExpression') throw new Unsupported(call, 'net.request with a computed table');
      const f = tableFields(t);
      const m = f.method ? literal(f.method, 'net.request with a computed method') : 'GET';
      if (typeof m !== 'string' || !METHODS[m.toLowerCase()]) throw new Unsupported(call, `net.request method ${String(m)}`);
      method = METHODS[m.toLowerCase()];
      if (!f.url) throw new Unsupported(call, 'net.request without url');
      urlNode = f.url;
      bodyNode = f.body;
      optsNode = t;
    } else if (METHODS[fn]) {
      method = METHODS[fn];
      urlNode = args[0];
      const hasBody = method === 'POST' || method === 'PUT' || method === 'PATCH';
      if (hasBody) {
        bodyNode = args[1];
        optsNode = args[2];
      } else optsNode = args[1];
    } else {
      throw new Unsupported(call, `net.${fn} has no equivalent${fn === 'grpc' ? ' (gRPC)' : fn === 'ws' ? ' (WebSocket)' : ''}`);
    }
    const req: RequestStmt = { k: 'request', line: line(call), method, url: this.expr(urlNode), headers: [], query: [] };
    if (bodyNode && bodyNode.type !== 'NilLiteral') {
      req.body = bodyNode.type === 'TableConstructorExpression' ? { json: this.expr(bodyNode) } : { raw: this.expr(bodyNode) };
    }
    if (optsNode) {
      if (optsNode.type !== 'TableConstructorExpression') throw new Unsupported(call, 'request options computed at run time');
      const f = tableFields(optsNode);
      for (const [k, v] of Object.entries(f)) {
        if (k === 'url' || k === 'method' || k === 'body') continue;
        if (k === 'headers' || k === 'query') {
          const t = this.expr(v);
          if (t.k !== 'table' || t.list.length) throw new Unsupported(v, `${k} must be a table of name = value`);
          req[k] = t.fields;
        } else if (k === 'json') req.body = { json: this.expr(v) };
        else if (k === 'name') {
          let n: unknown;
          try {
            n = literal(v);
          } catch {
            n = undefined;
          }
          // the request itself still translates: only its name is lost
          if (typeof n === 'string') req.name = n;
          else this.skipped.push({ line: line(v), what: 'a request name computed at run time (the request is kept, named by its URL)' });
        } else if (k === 'timeout' || k === 'cookies' || k === 'tags') {
          // timeouts and the cookie jar behave alike in every target; tags other than name are not exported
        } else throw new Unsupported(v, `request option ${k}`);
      }
    }
    return req;
  }

  expr(n: LuaNode): Expr {
    switch (n.type) {
      case 'StringLiteral':
        return { k: 'str', v: stringValue(n) };
      case 'NumericLiteral':
        return { k: 'num', v: n.value };
      case 'BooleanLiteral':
        return { k: 'bool', v: n.value };
      case 'NilLiteral':
        return { k: 'nil' };
      case 'Identifier':
        if (this.locals.has(n.name) || this.model.constants.some((c) => c.name === n.name)) return { k: 'var', name: n.name };
        throw new Unsupported(n, `${n.name} (a global or a value the export cannot follow)`);
      case 'BinaryExpression':
      case 'LogicalExpression': {
        const op = n.operator as string;
        if (op === '..') {
          const l = this.expr(n.left);
          const r = this.expr(n.right);
          return { k: 'concat', parts: [...(l.k === 'concat' ? l.parts : [l]), ...(r.k === 'concat' ? r.parts : [r])] };
        }
        if (['==', '~=', '<', '<=', '>', '>=', 'and', 'or', '+', '-', '*', '/'].includes(op)) return { k: 'bin', op: op as never, l: this.expr(n.left), r: this.expr(n.right) };
        throw new Unsupported(n, `operator ${op}`);
      }
      case 'UnaryExpression':
        if (n.operator === 'not') return { k: 'not', e: this.expr(n.argument) };
        if (n.operator === '-' && n.argument.type === 'NumericLiteral') return { k: 'num', v: -n.argument.value };
        throw new Unsupported(n, `operator ${n.operator}`);
      case 'TableConstructorExpression': {
        const t: Expr & { k: 'table' } = { k: 'table', fields: [], list: [] };
        for (const f of n.fields) {
          if (f.type === 'TableValue') t.list.push(this.expr(f.value));
          else if (f.type === 'TableKeyString') t.fields.push({ key: f.key.name, value: this.expr(f.value) });
          else if (f.type === 'TableKey' && f.key.type === 'StringLiteral') t.fields.push({ key: stringValue(f.key), value: this.expr(f.value) });
          else throw new Unsupported(f, 'a table key computed at run time');
        }
        return t;
      }
      case 'CallExpression':
      case 'StringCallExpression': {
        const args: LuaNode[] = n.type === 'StringCallExpression' ? [n.argument] : n.arguments;
        if (n.base.type === 'Identifier' && n.base.name === 'env' && args[0]?.type === 'StringLiteral') return { k: 'env', name: stringValue(args[0]), dflt: args[1] ? this.expr(args[1]) : undefined };
        if (n.base.type === 'Identifier' && n.base.name === 'tostring' && args.length === 1) return { k: 'tostring', e: this.expr(args[0]) };
        // r:json()
        if (n.base.type === 'MemberExpression' && n.base.identifier.name === 'json' && n.base.base.type === 'Identifier' && this.responses.has(n.base.base.name)) return { k: 'json', resp: n.base.base.name, path: [] };
        if (n.base.type === 'MemberExpression' && n.base.base.type === 'Identifier' && n.base.base.name === 'json' && n.base.identifier.name === 'decode' && args[0]) {
          const inner = this.expr(args[0]);
          if (inner.k === 'body') return { k: 'json', resp: inner.resp, path: [] };
        }
        if (this.request(n)) throw new Unsupported(n, 'a request inside an expression (assign it to a local first)');
        const mod = this.moduleOf(n.base);
        if (mod && mod !== 'net') throw new Unsupported(n, `${calleeText(n)}: ${UNSUPPORTED_MODULES[mod] ?? mod} has no equivalent`);
        throw new Unsupported(n, `call ${calleeText(n)} (arbitrary Lua)`);
      }
      case 'MemberExpression':
      case 'IndexExpression': {
        const key = n.type === 'MemberExpression' ? n.identifier.name : literal(n.index, 'an index computed at run time');
        if (typeof key !== 'string' && typeof key !== 'number') throw new Unsupported(n, 'an index computed at run time');
        // ctx.data / ctx.iteration are topas-specific
        if (n.base.type === 'Identifier' && n.base.name === this.ctxName) throw new Unsupported(n, `${this.ctxName}.${key} (per-iteration context has no equivalent)`);
        if (n.base.type === 'Identifier' && this.responses.has(n.base.name)) {
          const resp: string = n.base.name;
          if (key === 'code' || key === 'status') return { k: 'status', resp };
          if (key === 'body') return { k: 'body', resp };
          throw new Unsupported(n, `response field ${key}`);
        }
        if ((n.base.type === 'MemberExpression' || n.base.type === 'IndexExpression') && n.base.base.type === 'Identifier' && this.responses.has(n.base.base.name)) {
          const field = n.base.type === 'MemberExpression' ? n.base.identifier.name : literal(n.base.index, 'an index computed at run time');
          if (field === 'headers' && typeof key === 'string') return { k: 'header', resp: n.base.base.name, name: key.toLowerCase() };
        }
        const base = this.expr(n.base);
        if (base.k === 'json') return { k: 'json', resp: base.resp, path: [...base.path, typeof key === 'number' ? key - 1 : key] };
        throw new Unsupported(n, 'indexing a value the export cannot follow');
      }
      default:
        throw new Unsupported(n, `${n.type} (arbitrary Lua)`);
    }
  }
}

function tableFields(t: LuaNode): Record<string, LuaNode> {
  const out: Record<string, LuaNode> = {};
  for (const f of t.fields) {
    if (f.type === 'TableKeyString') out[f.key.name] = f.value;
    else if (f.type === 'TableKey' && f.key.type === 'StringLiteral') out[stringValue(f.key)] = f.value;
  }
  return out;
}
