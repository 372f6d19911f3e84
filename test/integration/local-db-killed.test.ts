import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { cli } from '../helpers/cli';

// End to end on the local backend: the embedded PostgreSQL is killed while a
// scenario holds a connection. The scenario sees a Lua error it can catch, the
// other scenario on the same worker thread passes, and the report keeps both.

const APP = [
  'name: dbkill',
  'databases:',
  '  - name: db',
  '    image: local/postgres',
  '    version: "15"',
  '    credentials: { user: app, password: pw-1, dbname: appdb }',
  '',
].join('\n');

// step 1 asks the test (over HTTP) to kill the server, which answers once it is dead
const HOLDER = [
  'local db = require("db")',
  'local net = require("net")',
  'local c',
  'step("connect", function()',
  '  c = db.connect("db")',
  '  local pid = c:query("select pg_backend_pid() as pid")[1].pid',
  '  expect(net.get("http://127.0.0.1:" .. env("KILLER_PORT") .. "/kill?pid=" .. pid).status):to_be(200)',
  'end)',
  'step("after the kill", function()',
  '  sleep(0.5)',
  '  local ok, err = pcall(function() return c:query("select 1") end)',
  '  expect(ok):to_be(false)',
  '  expect(tostring(err)):to_match("the connection to db was lost")',
  'end)',
].join('\n');

const BYSTANDER = ['step("meanwhile", function()', '  sleep(3)', '  expect(2 * 2):to_be(4)', 'end)'].join('\n');

function parentOf(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
}

test('topas run: the embedded PostgreSQL killed under a held connection is a catchable Lua error; the worker, the other scenario and the report survive', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-dbkill-'));
  let killed = 0;
  const server = http.createServer((req, res) => {
    const backend = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('pid'));
    const postmaster = parentOf(backend);
    process.kill(postmaster, 'SIGKILL');
    killed = postmaster;
    // answer once the server is gone, so step 2 meets a dead session
    const wait = setInterval(() => {
      if (!fs.existsSync(`/proc/${postmaster}`) || /\) Z /.test(fs.readFileSync(`/proc/${postmaster}/stat`, 'utf8'))) {
        clearInterval(wait);
        res.end('killed');
      }
    }, 50);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  try {
    fs.writeFileSync(path.join(dir, 'topas.yaml'), APP);
    fs.writeFileSync(path.join(dir, 'holder.lua'), HOLDER);
    fs.writeFileSync(path.join(dir, 'bystander.lua'), BYSTANDER);
    const report = path.join(dir, 'report.json');
    const r = await cli(
      ['run', 'holder.lua', 'bystander.lua', '--app', 'topas.yaml', '--backend', 'local', '--workers', '1', '--parallel', '2', '--env', `KILLER_PORT=${port}`, '--reporter', `json:${report}`],
      { cwd: dir },
    );
    assert.ok(killed > 0, 'the scenario asked for the kill');
    const out = r.stdout + r.stderr;
    assert.doesNotMatch(out, /worker crashed|WorkerError/);
    assert.doesNotMatch(out, /^\s+at .+\(.*\.js:\d+:\d+\)$/m, 'no JS stack');
    const json = JSON.parse(fs.readFileSync(report, 'utf8'));
    const scenarios = json.results as Array<{ name: string; state: string; steps: Array<{ name: string; state: string }> }>;
    const holder = scenarios.find((s) => s.name === 'holder.lua');
    const bystander = scenarios.find((s) => s.name === 'bystander.lua');
    assert.deepEqual(holder?.steps.map((s) => [s.name, s.state]), [['connect', 'passed'], ['after the kill', 'passed']], out);
    assert.equal(bystander?.state, 'passed', out);
    assert.equal(r.code, 0, out);
  } finally {
    server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
