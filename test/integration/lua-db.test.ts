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

async function backendConnections(): Promise<number> {
  const c = new pg.Client({ host: db.host, port: db.port, user: db.user, password: db.password, database: db.dbname });
  await c.connect();
  try {
    const r = await c.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid() AND backend_type = 'client backend'", [db.dbname]);
    return r.rows[0].n as number;
  } finally {
    await c.end();
  }
}

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-db-'));
  db = await startPostgres();
  endpoints = {
    main: { kind: 'database', urls: [db.url], extra: {}, db: { host: db.host, port: db.port, user: db.user, password: db.password, dbname: db.dbname } },
    api: { kind: 'service', urls: ['http://127.0.0.1:1'], extra: {} },
  };
  rt = await LuaRuntime.create({ onLog: () => undefined, onEvent: () => undefined, rpc: async () => undefined });
  const setup = await runLua(
    'schema.lua',
    'local db = require("db")\nlocal c = db.connect("main")\nc:exec("CREATE TABLE users (id serial PRIMARY KEY, name text NOT NULL, age int, meta jsonb, created timestamptz DEFAULT now())")\n',
  );
  assert.equal(setup.state, 'passed', setup.error?.message);
});

after(async () => {
  rt?.close();
  await db?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

test('connect, seed, query, exec, expect and truncate', async () => {
  const r = await runLua(
    'crud.lua',
    [
      'local db = require("db")',
      'local c = db.connect()',
      'expect(c:seed{table="users", rows={{name="alice", age=30, meta={tier="gold"}}, {name="bob"}}}):to_be(2)',
      'local rows = c:query("SELECT id, name, age, meta, created FROM users ORDER BY id")',
      'expect(#rows):to_be(2)',
      'expect(rows[1].name):to_be("alice")',
      'expect(rows[1].age):to_be(30)',
      'expect(rows[1].meta.tier):to_be("gold")',
      'expect(rows[2].age):to_be_nil()',
      'expect(rows[1].created):to_match("^%d%d%d%d%-")',
      'expect(c:query("SELECT count(*) AS n FROM users")[1].n):to_be(2)',
      'expect(c:exec("UPDATE users SET age = $1 WHERE name = $2", {31, "alice"})):to_be(1)',
      'c:expect{table="users", where={name="alice", age=31}}',
      'c:expect{table="users", count=2}',
      'db.expect{table="users", where={name="bob"}, count=1}',
      'db.seed{table="users", rows={{name="carol"}}}',
      'expect(#db.query("SELECT 1 FROM users")):to_be(3)',
      'c:truncate("users")',
      'expect(#c:query("SELECT * FROM users")):to_be(0)',
      'c:close()',
    ].join('\n'),
  );
  assert.equal(r.state, 'passed', r.error?.message);
});

test('a failed db.expect is an assertion failure naming table, where and found count', async () => {
  const r = await runLua('expect.lua', 'local db = require("db")\nlocal c = db.connect({host="127.0.0.1", port=' + db.port + ', user="' + db.user + '", password="' + db.password + '", db="' + db.dbname + '"})\n\nc:expect{table="users", where={name="zed"}, count=1}\n');
  assert.equal(r.state, 'failed');
  assert.equal(r.error?.location, 'expect.lua:4');
  assert.equal(r.error?.message, 'expect.lua:4: db.expect: expected 1 row in users where {name="zed"}, found 0');
});

test('an SQL error shows the statement and the error position', async () => {
  const r = await runLua('sqlerr.lua', 'local db = require("db")\nlocal c = db.connect("main")\nc:query("SELECT nme FROM users")\n');
  assert.equal(r.state, 'error');
  assert.equal(r.error?.location, 'sqlerr.lua:3');
  const msg = r.error?.message ?? '';
  assert.match(msg, /^sqlerr\.lua:3: db\.query: column "nme" does not exist/);
  assert.match(msg, /LINE 1: SELECT nme FROM users\n {2}\s{8}\s{7}\^/);
});

test('connections are closed when the scenario ends, even on failure', async () => {
  const before = await backendConnections();
  const r = await runLua('leak.lua', 'local db = require("db")\nlocal a = db.connect("main")\nlocal b = db.connect("main")\nerror("stop here")\n');
  assert.equal(r.state, 'error');
  let now = await backendConnections();
  // the server notices a closed socket a moment later
  for (let i = 0; i < 50 && now > before; i++) {
    await new Promise((res) => setTimeout(res, 100));
    now = await backendConnections();
  }
  assert.equal(now, before);
});

test('db.connect errors name the problem', async () => {
  const r = await runLua('noname.lua', 'local db = require("db")\ndb.connect("nope")\n');
  assert.equal(r.error?.message, 'noname.lua:2: db.connect: no database named "nope" (databases: main)');
  const s = await runLua('noconn.lua', 'local db = require("db")\ndb.seed{table="users", rows={}}\n');
  assert.equal(s.error?.message, 'noconn.lua:2: db.seed: no connection yet; call db.connect first');
});
