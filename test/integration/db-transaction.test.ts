import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { LuaRuntime } from '../../src/lua/engine';
import type { EndpointMap } from '../../src/backends/backend';
import type { ScenarioResult } from '../../src/run/scenario-types';
import { runLuaSource } from '../helpers/lua-scenario';
import { startPostgres, type TestPostgres } from '../helpers/postgres';

let dir: string;
let rt: LuaRuntime;
let db: TestPostgres;
let endpoints: EndpointMap;

function runLua(name: string, source: string): Promise<ScenarioResult> {
  return runLuaSource(rt, dir, name, source, endpoints);
}

async function sql<T = Record<string, unknown>>(text: string, params: unknown[] = []): Promise<T[]> {
  const c = new pg.Client({ host: db.host, port: db.port, user: db.user, password: db.password, database: db.dbname });
  await c.connect();
  try {
    return (await c.query(text, params)).rows as T[];
  } finally {
    await c.end();
  }
}

async function scenarioConnections(): Promise<number> {
  const rows = await sql<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid() AND backend_type = 'client backend'", [db.dbname]);
  return rows[0].n;
}

async function settledConnections(want: number): Promise<number> {
  let now = await scenarioConnections();
  // the server notices a closed socket a moment later
  for (let i = 0; i < 50 && now !== want; i++) {
    await new Promise((res) => setTimeout(res, 100));
    now = await scenarioConnections();
  }
  return now;
}

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-dbtx-'));
  db = await startPostgres();
  endpoints = {
    main: { kind: 'database', urls: [db.url], extra: {}, db: { host: db.host, port: db.port, user: db.user, password: db.password, dbname: db.dbname } },
  };
  rt = await LuaRuntime.create({ onLog: () => undefined, onEvent: () => undefined, rpc: async () => undefined });
  await sql('CREATE TABLE accounts (name text PRIMARY KEY, balance int NOT NULL CHECK (balance >= 0))');
});

after(async () => {
  rt?.close();
  await db?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

test('transaction commits on return and hands back what fn returned', async () => {
  await sql('TRUNCATE accounts');
  const r = await runLua(
    'commit.lua',
    [
      'local db = require("db")',
      'local c = db.connect()',
      'local a, b = c:transaction(function(tx)',
      '  tx:seed{table="accounts", rows={{name="alice", balance=100}, {name="bob", balance=0}}}',
      '  tx:exec("UPDATE accounts SET balance = balance - 40 WHERE name = $1", {"alice"})',
      '  tx:exec("UPDATE accounts SET balance = balance + 40 WHERE name = $1", {"bob"})',
      '  return "moved", 40',
      'end)',
      'expect(a):to_be("moved")',
      'expect(b):to_be(40)',
      'c:expect{table="accounts", where={name="bob", balance=40}, count=1}',
    ].join('\n'),
  );
  assert.equal(r.state, 'passed', r.error?.message);
  assert.deepEqual(await sql('SELECT name, balance FROM accounts ORDER BY name'), [
    { name: 'alice', balance: 60 },
    { name: 'bob', balance: 40 },
  ]);
});

test('transaction rolls back on an error and re-raises it unchanged', async () => {
  await sql("TRUNCATE accounts; INSERT INTO accounts VALUES ('alice', 100)");
  const r = await runLua(
    'rollback.lua',
    [
      'local db = require("db")',
      'local c = db.connect("main")',
      'local ok, err = pcall(c.transaction, c, function(tx)',
      '  tx:exec("UPDATE accounts SET balance = 0 WHERE name = \'alice\'")',
      '  error("business rule broke")',
      'end)',
      'expect(ok):to_be(false)',
      'expect(err):to_contain("business rule broke")',
      'c:expect{table="accounts", where={name="alice", balance=100}, count=1}',
      '-- an SQL error inside: rolled back, the scenario fails with the statement and position',
      'db.transaction(function(tx)',
      '  tx:exec("INSERT INTO accounts VALUES (\'carol\', 5)")',
      '  tx:exec("UPDATE accounts SET balance = balance - 500 WHERE name = \'alice\'")',
      'end)',
    ].join('\n'),
  );
  assert.equal(r.state, 'error');
  assert.equal(r.error?.location, 'rollback.lua:13');
  const msg = r.error?.message ?? '';
  assert.match(msg, /db\.exec: new row for relation "accounts" violates check constraint "accounts_balance_check"/);
  assert.match(msg, /in: UPDATE accounts SET balance = balance - 500/);
  assert.deepEqual(await sql('SELECT name, balance FROM accounts ORDER BY name'), [{ name: 'alice', balance: 100 }]);
});

test('a failed expectation inside a transaction stays an assertion failure', async () => {
  await sql('TRUNCATE accounts');
  const r = await runLua(
    'assert.lua',
    [
      'local db = require("db")',
      'local c = db.connect()',
      'c:transaction(function(tx)',
      '  tx:seed{table="accounts", rows={{name="dave", balance=1}}}',
      '  tx:expect{table="accounts", where={name="dave"}, count=2}',
      'end)',
    ].join('\n'),
  );
  assert.equal(r.state, 'failed');
  assert.equal(r.error?.message, 'assert.lua:5: db.expect: expected 2 rows in accounts where {name="dave"}, found 1');
  assert.deepEqual(await sql('SELECT * FROM accounts'), []);
});

test('nested transactions are savepoints', async () => {
  await sql('TRUNCATE accounts');
  const r = await runLua(
    'nested.lua',
    [
      'local db = require("db")',
      'local c = db.connect()',
      'c:transaction(function(tx)',
      '  tx:seed{table="accounts", rows={{name="outer", balance=1}}}',
      '  local ok = pcall(tx.transaction, tx, function(inner)',
      '    inner:seed{table="accounts", rows={{name="inner-lost", balance=1}}}',
      '    error("inner fails")',
      '  end)',
      '  expect(ok):to_be(false)',
      '  tx:transaction(function(inner) inner:seed{table="accounts", rows={{name="inner-kept", balance=1}}} end)',
      'end)',
    ].join('\n'),
  );
  assert.equal(r.state, 'passed', r.error?.message);
  assert.deepEqual(
    (await sql<{ name: string }>('SELECT name FROM accounts ORDER BY name')).map((x) => x.name),
    ['inner-kept', 'outer'],
  );
});

test('an SQL error shows the statement line and a caret at the position', async () => {
  const r = await runLua('pos.lua', 'local db = require("db")\nlocal c = db.connect()\nc:query([[SELECT name,\n  balanse\nFROM accounts]])\n');
  assert.equal(r.state, 'error');
  const msg = r.error?.message ?? '';
  assert.match(msg, /^pos\.lua:3: db\.query: column "balanse" does not exist/);
  assert.match(msg, /\n {2}LINE 2: {3}balanse\n {2} {8} {2}\^/);
});

test('connections are pooled per scenario and closed when it ends', async () => {
  const before = await settledConnections(0);
  assert.equal(before, 0);
  const r = await runLua(
    'pool.lua',
    [
      'local db = require("db")',
      'local pids = {}',
      'for i = 1, 20 do',
      '  local c = db.connect()',
      '  c:exec("SET application_name = \'leftover\'")',
      '  local row = c:query("SELECT pg_backend_pid() AS pid, current_setting(\'application_name\') AS app")[1]',
      '  pids[row.pid] = true',
      '  c:close()',
      'end',
      'local n = 0',
      'for _ in pairs(pids) do n = n + 1 end',
      '-- one session served all twenty connects',
      'expect(n):to_be(1)',
      '-- and each connect started from a clean session',
      'local c = db.connect()',
      'expect(c:query("SELECT current_setting(\'application_name\') AS app")[1].app):never():to_be("leftover")',
      'local c2 = db.connect()',
      'expect(c2:query("SELECT pg_backend_pid() AS pid")[1].pid):never():to_be(c:query("SELECT pg_backend_pid() AS pid")[1].pid)',
      'error("end with both open")',
    ].join('\n'),
  );
  assert.equal(r.state, 'error', r.error?.message);
  assert.match(r.error?.message ?? '', /end with both open/);
  assert.equal(await settledConnections(0), 0);
});
