import type pgTypes from 'pg';
// loaded on first use: most scripts (and every load worker without db) never need it
let pgModule: typeof pgTypes | undefined;
const pgLib = (): typeof pgTypes => (pgModule ??= require('pg') as typeof pgTypes);
import { LuaMultiReturn } from 'wasmoon';
import type { LuaModuleContext, LuaModuleInstance } from './module-types';
import { LuaAssertionError } from './module-types';
import { errorMessage } from '../lua-values';

interface ConnInfo {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
}

/** Lua-side connection objects with methods, plus the module-level shortcuts on the last connection. */
const DB_SHIM = String.raw`
local js, h = ...
local Conn = {}
Conn.__index = Conn
Conn.__name = "db.connection"
Conn.__tostring = function(c) return "db.connection(" .. c.target .. ")" end
local function self_check(c, fn)
  if getmetatable(c) ~= Conn then h.raise("db." .. fn .. ": call it as c:" .. fn .. "(...) on a connection") end
end
function Conn.query(c, sql, params) self_check(c, "query"); return js.query(c.id, sql, params) end
function Conn.exec(c, sql, params) self_check(c, "exec"); return js.exec(c.id, sql, params) end
function Conn.seed(c, spec) self_check(c, "seed"); return js.seed(c.id, spec) end
function Conn.expect(c, spec) self_check(c, "expect"); return js.expect(c.id, spec) end
function Conn.truncate(c, ...) self_check(c, "truncate"); return js.truncate(c.id, {...}) end
function Conn.close(c) self_check(c, "close"); return js.close(c.id) end
-- commit when fn returns, roll back (then re-raise the same error) when it raises;
-- nested calls use savepoints
function Conn.transaction(c, fn)
  self_check(c, "transaction")
  if type(fn) ~= "function" then h.raise("db.transaction: expected a function, got " .. type(fn)) end
  js.tx_begin(c.id)
  local res = table.pack(pcall(fn, c))
  if res[1] then
    js.tx_end(c.id, true)
    return table.unpack(res, 2, res.n)
  end
  -- the error that broke fn is the one to report, even if the rollback fails too (dead connection)
  pcall(js.tx_end, c.id, false)
  error(res[2], 0)
end
local last
local M = {}
function M.connect(target)
  local id, name = js.connect(target)
  last = setmetatable({ id = id, target = name }, Conn)
  return last
end
local function on_last(fn)
  return function(...)
    if not last then h.raise("db." .. fn .. ": no connection yet; call db.connect first") end
    return Conn[fn](last, ...)
  end
end
M.query, M.exec, M.seed, M.expect, M.truncate, M.close, M.transaction =
  on_last("query"), on_last("exec"), on_last("seed"), on_last("expect"), on_last("truncate"), on_last("close"), on_last("transaction")
return M
`;

const quoteIdent = (name: string): string =>
  name
    .split('.')
    .map((part) => `"${part.replace(/"/g, '""')}"`)
    .join('.');

// int8 and numeric arrive as strings by default; scenarios compare them with numbers
const typeParsers = {
  getTypeParser(oid: number, format?: 'text' | 'binary') {
    if (oid === 20 || oid === 1700) return (v: string) => {
      const n = Number(v);
      return Number.isSafeInteger(n) || oid === 1700 ? n : v;
    };
    return pgLib().types.getTypeParser(oid, format as 'text');
  },
};

/** `message` plus the statement with a caret under the error position, as psql shows it. */
export function formatSqlError(what: string, sql: string, err: unknown): string {
  const e = err as Error & { position?: string; detail?: string; hint?: string };
  const lines = [`${what}: ${errorMessage(err)}`];
  const pos = e.position ? Number(e.position) : NaN;
  if (Number.isFinite(pos) && pos > 0) {
    // show the line of the statement that holds the position
    const start = sql.lastIndexOf('\n', pos - 1) + 1;
    let end = sql.indexOf('\n', pos - 1);
    if (end < 0) end = sql.length;
    const lineNo = sql.slice(0, start).split('\n').length;
    const text = sql.slice(start, end);
    lines.push(`  LINE ${lineNo}: ${text}`);
    lines.push(`  ${' '.repeat(`LINE ${lineNo}: `.length + (pos - 1 - start))}^`);
  } else {
    lines.push(`  in: ${sql.trim()}`);
  }
  if (e.detail) lines.push(`  DETAIL: ${e.detail}`);
  if (e.hint) lines.push(`  HINT: ${e.hint}`);
  return lines.join('\n');
}

/** An error the server sent about a statement (it has a SQLSTATE), as opposed to a broken connection. */
function isServerError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== 'string' || !/^[0-9A-Z]{5}$/.test(code)) return false;
  // class 57P: operator intervention (admin shutdown, crash shutdown, terminated backend), class 08: connection exceptions
  return !code.startsWith('57P') && !code.startsWith('08');
}

function luaInspect(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (v === null || v === undefined) return 'nil';
  if (typeof v !== 'object') return String(v);
  if (Array.isArray(v)) return `{${v.map(luaInspect).join(', ')}}`;
  return `{${Object.entries(v)
    .map(([k, x]) => `${/^[A-Za-z_]\w*$/.test(k) ? k : `[${JSON.stringify(k)}]`}=${luaInspect(x)}`)
    .join(', ')}}`;
}

/** Clients one scenario may hold per database: a scenario is one coroutine, a few suffice. */
const POOL_MAX = 10;
const POOL_IDLE_MS = 10_000;

interface Conn {
  client: pgTypes.PoolClient;
  name: string;
  /** open transaction() levels: 1 = BEGIN, more = savepoints */
  txDepth: number;
  /** why the session died under the scenario (server gone, backend terminated) */
  lost?: Error;
  onError: (err: Error) => void;
}

export function createDbModule(ctx: LuaModuleContext): LuaModuleInstance {
  // connections are pooled per scenario and database: connect/close in a loop reuses sessions
  const pools = new Map<string, pgTypes.Pool>();
  const conns = new Map<number, Conn>();
  let nextId = 1;

  function poolFor(info: ConnInfo, name: string): pgTypes.Pool {
    const key = JSON.stringify(info);
    let pool = pools.get(key);
    if (!pool) {
      pool = new (pgLib().Pool)({ ...info, max: POOL_MAX, idleTimeoutMillis: POOL_IDLE_MS, connectionTimeoutMillis: 10_000, allowExitOnIdle: true });
      // a dead server emits 'error' on an idle client; an unhandled 'error' event would kill the worker
      pool.on('error', (err) => ctx.log('warn', `db ${name}: ${err.message}`));
      pools.set(key, pool);
    }
    return pool;
  }

  /** Back to the pool with a clean session (a script may have left a transaction or SETs behind); else dropped. */
  async function release(c: Conn): Promise<void> {
    if (c.lost) return drop(c);
    try {
      // two statements: one multi-statement query is one implicit transaction, where DISCARD ALL is refused
      await c.client.query('ROLLBACK');
      await c.client.query('DISCARD ALL');
      c.client.off('error', c.onError);
      c.client.release();
    } catch (err) {
      c.lost ??= err as Error;
      drop(c);
    }
  }

  /** Destroys the session; its error listener stays, so a late 'error' of the dying socket has a listener. */
  function drop(c: Conn): void {
    try {
      c.client.release(c.lost ?? true);
    } catch {
      // released already
    }
  }

  function resolveTarget(target: unknown): { info: ConnInfo; name: string } {
    const eps = ctx.endpoints();
    if (target === undefined || target === null) {
      const dbs = Object.entries(eps).filter(([, e]) => e.kind === 'database' && e.db);
      if (dbs.length === 0) throw new Error('db.connect: the app has no database; pass {host=, port=, user=, password=, db=}');
      if (dbs.length > 1) throw new Error(`db.connect: the app has ${dbs.length} databases (${dbs.map(([n]) => n).join(', ')}); name one`);
      return resolveTarget(dbs[0][0]);
    }
    if (typeof target === 'string') {
      const e = eps[target];
      if (!e || e.kind !== 'database' || !e.db) {
        const names = Object.entries(eps).filter(([, x]) => x.kind === 'database').map(([n]) => n);
        throw new Error(`db.connect: no database named "${target}"${names.length ? ` (databases: ${names.join(', ')})` : ''}`);
      }
      return { info: { host: e.db.host, port: e.db.port, user: e.db.user, password: e.db.password, database: e.db.dbname }, name: target };
    }
    if (typeof target === 'object' && !Array.isArray(target)) {
      const t = target as Record<string, unknown>;
      const info: ConnInfo = {
        host: String(t.host ?? '127.0.0.1'),
        port: Number(t.port ?? 5432),
        user: String(t.user ?? 'postgres'),
        password: String(t.password ?? ''),
        database: String(t.db ?? t.dbname ?? t.database ?? t.user ?? 'postgres'),
      };
      return { info, name: `${info.host}:${info.port}/${info.database}` };
    }
    throw new Error(`db.connect: expected a database name or {host=, port=, user=, password=, db=}, got ${typeof target}`);
  }

  function connOf(id: unknown, fn: string): Conn {
    const c = conns.get(Number(id));
    if (!c) throw new Error(`db.${fn}: the connection is closed`);
    if (c.lost) throw lostError(c, fn);
    return c;
  }

  const lostError = (c: Conn, fn: string): Error => new Error(`db.${fn}: the connection to ${c.name} was lost: ${errorMessage(c.lost)}`);

  async function run(fn: string, id: unknown, sql: string, params: unknown[] = []): Promise<pgTypes.QueryResult> {
    const c = connOf(id, fn);
    try {
      return await c.client.query({ text: sql, values: params.map((p) => (typeof p === 'object' && p !== null ? JSON.stringify(p) : p)), types: typeParsers });
    } catch (err) {
      // the session died while this statement ran: say so, not as an SQL error
      if (c.lost || !isServerError(err)) {
        c.lost ??= err as Error;
        throw lostError(c, fn);
      }
      throw new Error(formatSqlError(`db.${fn}`, sql, err));
    }
  }

  const sqlArg = (sql: unknown, fn: string): string => {
    if (typeof sql !== 'string' || sql.trim() === '') throw new Error(`db.${fn}: expected an SQL string`);
    return sql;
  };
  const paramsArg = (params: unknown, fn: string): unknown[] => {
    if (params === undefined || params === null) return [];
    if (Array.isArray(params)) return params;
    if (typeof params === 'object' && Object.keys(params as object).length === 0) return [];
    throw new Error(`db.${fn}: params must be a list like {1, "x"}`);
  };
  const tableArg = (spec: unknown, fn: string): Record<string, unknown> & { table: string } => {
    if (typeof spec !== 'object' || spec === null || typeof (spec as { table?: unknown }).table !== 'string') {
      throw new Error(`db.${fn}: expected {table="name", ...}`);
    }
    return spec as Record<string, unknown> & { table: string };
  };

  return {
    shim: DB_SHIM,
    exports: {
      connect: async (target: unknown) => {
        const { info, name } = resolveTarget(target);
        let client: pgTypes.PoolClient;
        try {
          client = await poolFor(info, name).connect();
        } catch (err) {
          throw new Error(`db.connect ${name}: ${errorMessage(err)}`);
        }
        const id = nextId++;
        const c: Conn = { client, name, txDepth: 0, onError: () => undefined };
        // a checked-out client is the scenario's: the pool's 'error' listener is off while it is, and an
        // unhandled 'error' event (server killed, backend terminated) would end the worker thread
        c.onError = (err: Error) => {
          c.lost ??= err;
        };
        client.on('error', c.onError);
        conns.set(id, c);
        return LuaMultiReturn.of<unknown>(id, name);
      },
      query: async (id: unknown, sql: unknown, params: unknown) => {
        const r = await run('query', id, sqlArg(sql, 'query'), paramsArg(params, 'query'));
        return r.rows;
      },
      exec: async (id: unknown, sql: unknown, params: unknown) => {
        const r = await run('exec', id, sqlArg(sql, 'exec'), paramsArg(params, 'exec'));
        return r.rowCount ?? 0;
      },
      seed: async (id: unknown, specIn: unknown) => {
        const spec = tableArg(specIn, 'seed');
        const rows = Array.isArray(spec.rows) ? (spec.rows as Record<string, unknown>[]) : [];
        if (rows.length === 0) return 0;
        const cols = [...new Set(rows.flatMap((r) => Object.keys(r)))];
        const values: unknown[] = [];
        const tuples = rows.map((r) => `(${cols.map((c) => (r[c] === undefined ? 'DEFAULT' : `$${values.push(typeof r[c] === 'object' && r[c] !== null ? JSON.stringify(r[c]) : r[c])}`)).join(', ')})`);
        const sql = `INSERT INTO ${quoteIdent(spec.table)} (${cols.map(quoteIdent).join(', ')}) VALUES ${tuples.join(', ')}`;
        const r = await run('seed', id, sql, values);
        return r.rowCount ?? rows.length;
      },
      expect: async (id: unknown, specIn: unknown) => {
        const spec = tableArg(specIn, 'expect');
        const where = (spec.where && typeof spec.where === 'object' ? spec.where : {}) as Record<string, unknown>;
        const values: unknown[] = [];
        const conds = Object.entries(where).map(([k, v]) => `${quoteIdent(k)} = $${values.push(v)}`);
        const sql = `SELECT count(*)::int AS n FROM ${quoteIdent(spec.table)}${conds.length ? ` WHERE ${conds.join(' AND ')}` : ''}`;
        const r = await run('expect', id, sql, values);
        const found = Number(r.rows[0]?.n ?? 0);
        const want = typeof spec.count === 'number' ? spec.count : undefined;
        const ok = want === undefined ? found > 0 : found === want;
        if (!ok) {
          const whereText = conds.length ? ` where ${luaInspect(where)}` : '';
          const expected = want === undefined ? 'at least 1 row' : `${want} row${want === 1 ? '' : 's'}`;
          throw new LuaAssertionError(`db.expect: expected ${expected} in ${spec.table}${whereText}, found ${found}`);
        }
        return found;
      },
      truncate: async (id: unknown, tables: unknown) => {
        const list = Array.isArray(tables) ? tables.map(String) : [];
        if (list.length === 0) throw new Error('db.truncate: name at least one table');
        await run('truncate', id, `TRUNCATE ${list.map(quoteIdent).join(', ')} RESTART IDENTITY CASCADE`);
      },
      tx_begin: async (id: unknown) => {
        const c = connOf(id, 'transaction');
        const sql = c.txDepth === 0 ? 'BEGIN' : `SAVEPOINT topas_tx_${c.txDepth}`;
        await run('transaction', id, sql);
        c.txDepth++;
      },
      tx_end: async (id: unknown, commit: unknown) => {
        const c = connOf(id, 'transaction');
        if (c.txDepth === 0) throw new Error('db.transaction: no transaction is open');
        c.txDepth--;
        const sp = `topas_tx_${c.txDepth}`;
        if (c.txDepth === 0) await run('transaction', id, commit ? 'COMMIT' : 'ROLLBACK');
        else await run('transaction', id, commit ? `RELEASE SAVEPOINT ${sp}` : `ROLLBACK TO SAVEPOINT ${sp}`);
      },
      close: async (id: unknown) => {
        const c = conns.get(Number(id));
        if (!c) return;
        conns.delete(Number(id));
        await release(c);
      },
    },
    async close() {
      const all = [...conns.values()];
      conns.clear();
      // the scenario is over: drop sessions rather than clean them for reuse
      for (const c of all) drop(c);
      const ps = [...pools.values()];
      pools.clear();
      await Promise.all(ps.map((p) => p.end().catch(() => undefined)));
    },
  };
}
