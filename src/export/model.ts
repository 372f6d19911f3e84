/**
 * A load script's HTTP flow, read from its syntax tree into a small model
 * that every target (k6, Locust, Artillery) can print. Anything the model
 * cannot hold (db, sut, shape, grpc, sync, arbitrary Lua) is collected in
 * `skipped` with its line instead of being guessed at.
 */

export type Expr =
  | { k: 'str'; v: string }
  | { k: 'num'; v: number }
  | { k: 'bool'; v: boolean }
  | { k: 'nil' }
  | { k: 'var'; name: string }
  | { k: 'env'; name: string; dflt?: Expr }
  | { k: 'concat'; parts: Expr[] }
  /** a response's field: status code, body text, a header, or a path into its JSON */
  | { k: 'status'; resp: string }
  | { k: 'body'; resp: string }
  | { k: 'header'; resp: string; name: string }
  | { k: 'json'; resp: string; path: Array<string | number> }
  | { k: 'bin'; op: '==' | '~=' | '<' | '<=' | '>' | '>=' | 'and' | 'or' | '+' | '-' | '*' | '/'; l: Expr; r: Expr }
  | { k: 'not'; e: Expr }
  | { k: 'tostring'; e: Expr }
  | { k: 'table'; fields: Array<{ key: string; value: Expr }>; list: Expr[] };

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE' | 'HEAD';

export interface RequestStmt {
  k: 'request';
  line: number;
  /** the local that holds the response, if any */
  resp?: string;
  method: HttpMethod;
  url: Expr;
  headers: Array<{ key: string; value: Expr }>;
  query: Array<{ key: string; value: Expr }>;
  body?: { json: Expr } | { raw: Expr };
  /** the request's name (opts.name); the URL names it otherwise, as in topas */
  name?: string;
}

export type Stmt =
  | RequestStmt
  | { k: 'check'; line: number; name: string; cond: Expr }
  /** expect(x):to_be(v) and assert(cond): a failure ends the iteration */
  | { k: 'assert'; line: number; cond: Expr; message: string }
  | { k: 'sleep'; line: number; seconds: number }
  | { k: 'local'; line: number; name: string; value: Expr }
  | { k: 'if'; line: number; cond: Expr; then: Stmt[]; else: Stmt[] }
  | { k: 'for'; line: number; var: string; from: number; to: number; body: Stmt[] };

export interface Skipped {
  line: number;
  what: string;
}

export interface FlowModel {
  /** top-level locals usable in the flow (constants, env lookups, string building) */
  constants: Array<{ name: string; value: Expr; line: number }>;
  /** `options` as plain data, for resolveLoadPlan */
  options: unknown;
  /** the line of `options = {...}` (thresholds are reported there) */
  optionsLine: number;
  flow: Stmt[];
  hasIteration: boolean;
  skipped: Skipped[];
  /** names of the locals that hold responses (per target: the place a capture lands) */
  responses: Set<string>;
}
