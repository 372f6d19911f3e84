import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import type { EndpointMap } from '../../src/backends/backend';
import { ScenarioPool } from '../../src/run/scenario-pool';
import type { LogLine, ScenarioEvent, ScenarioResult, ScenarioTask } from '../../src/run/scenario-types';
import { startPostgres, type TestPostgres } from '../helpers/postgres';

// A PostgreSQL session that dies under a scenario (backend terminated, server
// killed) is a Lua error at the scenario's next call on it; the worker thread
// and the other scenarios on it go on.

let dir: string;
let db: TestPostgres;
let endpoints: EndpointMap;
let seq = 0;

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-dblost-'));
  db = await startPostgres();
  endpoints = { main: { kind: 'database', urls: [db.url], extra: {}, db: { host: db.host, port: db.port, user: db.user, password: db.password, dbname: db.dbname } } };
});

after(async () => {
  await db?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

function task(name: string, source: string): ScenarioTask {
  const file = path.join(dir, name);
  fs.writeFileSync(file, source);
  return {
    runId: `lost-${++seq}`,
    file,
    baseDir: dir,
    name,
    timeoutMs: 30_000,
    env: {},
    instance: { id: 'i-1', role: 'default', index: 1, count: 1, params: {} },
    endpoints,
    memoryLimitBytes: 32 << 20,
    continueOnFailure: false,
  };
}

async function admin<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ host: db.host, port: db.port, user: db.user, password: db.password, database: db.dbname });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end().catch(() => undefined);
  }
}

// step 2 sleeps while the test breaks the session (its client sits idle,
// checked out: the case that crashed the worker), then queries on it
const HOLDER = [
  'local db = require("db")',
  'local c',
  'step("connect", function()',
  '  c = db.connect("main")',
  '  expect(c:query("select 1 as n")[1].n):to_be(1)',
  'end)',
  'step("after the loss", function()',
  '  sleep(1.5)',
  '  local ok, err = pcall(function() return c:query("select 1") end)',
  '  expect(ok):to_be(false)',
  '  print("ERR: " .. tostring(err))',
  '  expect(tostring(err)):to_match("connection to main was lost")',
  '  local ok2, err2 = pcall(function() return c:exec("select 2") end)',
  '  expect(ok2):to_be(false)',
  '  expect(tostring(err2)):to_match("connection to main was lost")',
  '  c:close()',
  'end)',
].join('\n');

const BYSTANDER = ['step("still here", function()', '  sleep(2.5)', '  expect(1 + 1):to_be(2)', 'end)'].join('\n');

async function runBoth(breakIt: () => Promise<void>, holderSource = HOLDER): Promise<{ holder: ScenarioResult; bystander: ScenarioResult; logs: LogLine[] }> {
  const logs: LogLine[] = [];
  let broke: Promise<void> | undefined;
  const holderTask = task(`holder-${seq}.lua`, holderSource);
  // one worker: both scenarios share the thread that a crash would take down
  const pool = new ScenarioPool({
    workers: 1,
    rpc: async () => undefined,
    onLog: (l) => logs.push(l),
    onEvent: (runId: string, ev: ScenarioEvent) => {
      if (runId === holderTask.runId && ev.kind === 'step-end' && ev.name === 'connect') broke = breakIt();
    },
  });
  try {
    const [holder, bystander] = await Promise.all([pool.run(holderTask), pool.run(task(`bystander-${seq}.lua`, BYSTANDER))]);
    await broke;
    return { holder, bystander, logs };
  } finally {
    await pool.close();
  }
}

test('a terminated backend is a Lua error at the next call, catchable with pcall; the worker and the other scenario go on', async () => {
  const { holder, bystander, logs } = await runBoth(async () => {
    const n = await admin(async (c) => {
      const r = await c.query("SELECT count(*)::int AS n FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid() AND backend_type = 'client backend') t", [db.dbname]);
      return r.rows[0].n as number;
    });
    assert.equal(n, 1, 'one scenario session to terminate');
  });
  assert.equal(holder.state, 'passed', JSON.stringify(holder.error));
  assert.deepEqual(holder.steps.map((s) => [s.name, s.state]), [['connect', 'passed'], ['after the loss', 'passed']]);
  const line = logs.find((l) => l.message.startsWith('ERR: '));
  assert.match(line?.message ?? '', /db\.query: the connection to main was lost: terminating connection due to administrator command/);
  assert.equal(bystander.state, 'passed', JSON.stringify(bystander.error));
});

const terminateSessions = async (): Promise<void> => {
  await admin((c) => c.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid() AND backend_type = 'client backend'", [db.dbname]));
};

test('a backend terminated during a statement fails that call with the same clear error', async () => {
  const inFlight = [
    'local db = require("db")',
    'local c',
    'step("connect", function() c = db.connect("main") end)',
    'step("in flight", function()',
    '  local ok, err = pcall(function() return c:query("select pg_sleep(5)") end)',
    '  expect(ok):to_be(false)',
    '  print("ERR: " .. tostring(err))',
    '  expect(tostring(err)):to_match("db.query: the connection to main was lost")',
    'end)',
  ].join('\n');
  const { holder, bystander, logs } = await runBoth(async () => {
    await new Promise((r) => setTimeout(r, 300));
    await terminateSessions();
  }, inFlight);
  assert.equal(holder.state, 'passed', JSON.stringify(holder.error) + JSON.stringify(logs));
  assert.ok(holder.durationMs < 4000, 'the call ended with the session, not after pg_sleep');
  assert.equal(bystander.state, 'passed', JSON.stringify(bystander.error));
});

test('a killed PostgreSQL server is a Lua error at the next call; the worker and the other scenario go on', async () => {
  const { holder, bystander, logs } = await runBoth(async () => {
    process.kill(db.pid, 'SIGKILL');
  });
  assert.equal(holder.state, 'passed', JSON.stringify(holder.error));
  assert.deepEqual(holder.steps.map((s) => [s.name, s.state]), [['connect', 'passed'], ['after the loss', 'passed']]);
  const line = logs.find((l) => l.message.startsWith('ERR: '));
  assert.match(line?.message ?? '', /db\.query: the connection to main was lost/);
  assert.equal(bystander.state, 'passed', JSON.stringify(bystander.error));
});
