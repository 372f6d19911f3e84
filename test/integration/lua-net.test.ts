import { test, before, after } from 'node:test';
import { runLuaSource } from '../helpers/lua-scenario';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LuaRuntime } from '../../src/lua/engine';
import type { EndpointMap } from '../../src/backends/backend';
import type { ScenarioResult } from '../../src/run/scenario-types';
import { startHttpServer, type TestHttpServer } from '../helpers/http-server';

let dir: string;
let rt: LuaRuntime;
let a: TestHttpServer;
let b: TestHttpServer;

function runLua(name: string, source: string, endpoints: EndpointMap = {}): Promise<ScenarioResult> {
  return runLuaSource(rt, dir, name, source, endpoints);
}

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-net-'));
  a = await startHttpServer();
  b = await startHttpServer();
  rt = await LuaRuntime.create({ onLog: () => undefined, onEvent: () => undefined, rpc: async () => undefined });
});

after(async () => {
  rt.close();
  await a.close();
  await b.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

test('get/post/put/patch/delete/head against a real server', async () => {
  const r = await runLua(
    'verbs.lua',
    [
      `local net = require("net")`,
      `local base = "${a.url}"`,
      `local r = net.get(base .. "/users/alice", {headers={["X-Trace"]="t1"}, query={page=2}})`,
      `expect(r.code):to_be(200)`,
      `expect(r.status):to_be(200)`,
      `expect(r.headers["content-type"]):to_be("application/json")`,
      `expect(r:json().url):to_be("/users/alice?page=2")`,
      `expect(r:json().headers["x-trace"]):to_be("t1")`,
      `expect(r.time_ms):to_be_greater_than(0)`,
      `local p = net.post(base .. "/users", {name="bob", tags={"a","b"}})`,
      `expect(p:json().method):to_be("POST")`,
      `expect(json.decode(p:json().body)):to_equal({name="bob", tags={"a","b"}})`,
      `expect(p:json().headers["content-type"]):to_be("application/json")`,
      `expect(net.put(base .. "/x", "raw text"):json().body):to_be("raw text")`,
      `expect(net.patch(base .. "/x", nil, {json={k=1}}):json().body):to_be('{"k":1}')`,
      `expect(net.delete(base .. "/x"):json().method):to_be("DELETE")`,
      `local h = net.head(base .. "/x")`,
      `expect(h.code):to_be(200)`,
      `expect(h.body):to_be("")`,
      `local q = net.request{method="POST", url=base .. "/req", json={z=true}, timeout="5s"}`,
      `expect(q:json().body):to_be('{"z":true}')`,
      `expect(net.get(base .. "/status/404").code):to_be(404)`,
    ].join('\n'),
  );
  assert.equal(r.state, 'passed', r.error?.message);
});

test('the response table: headers and status_text filled in on first use, by pairs() too, raw_headers as received', async () => {
  const r = await runLua(
    'response.lua',
    [
      `local net = require("net")`,
      `local r = net.get("${a.url}/status/404")`,
      `expect(rawget(r, "headers")):to_be(nil)`,
      `expect(r.raw_headers):to_match("[Xx]%-[Ss]erved%-[Bb]y: %d+")`,
      `local keys = {}`,
      `for k in pairs(r) do keys[#keys + 1] = k end`,
      `table.sort(keys)`,
      `expect(table.concat(keys, ",")):to_be("body,code,headers,raw_headers,status,status_text,time_ms")`,
      `expect(r.headers["x-served-by"]):to_be("${new URL(a.url).port}")`,
      `expect(r.status_text):to_be("Not Found")`,
      `expect(type(r.json)):to_be("function")`,
      `local g = net.get("${a.url}/x")`,
      `expect(g.status_text):to_be("OK")`,
      `expect(g.headers["content-type"]):to_be("application/json")`,
    ].join('\n'),
  );
  assert.equal(r.state, 'passed', r.error?.message);
});

test('a service name resolves to its endpoints, round-robin over replicas', async () => {
  const endpoints: EndpointMap = { api: { kind: 'service', urls: [a.url, b.url], extra: {} } };
  const r = await runLua(
    'rr.lua',
    [
      `local net = require("net")`,
      `local seen = {}`,
      `for i = 1, 4 do seen[net.get("http://api/ping").headers["x-served-by"]] = true end`,
      `seen[net.get("http://api:8080/ping").headers["x-served-by"]] = true`,
      `expect(seen["${a.port}"]):to_be(true)`,
      `expect(seen["${b.port}"]):to_be(true)`,
    ].join('\n'),
    endpoints,
  );
  assert.equal(r.state, 'passed', r.error?.message);
});

test('endpoint updates reach running scenarios', async () => {
  rt.setEndpoints({ api: { kind: 'service', urls: [b.url], extra: {} } });
  try {
    const r = await runLua('upd.lua', `local net = require("net")\nexpect(net.get("http://api/x").headers["x-served-by"]):to_be("${b.port}")\n`, {
      api: { kind: 'service', urls: [a.url], extra: {} },
    });
    assert.equal(r.state, 'passed', r.error?.message);
  } finally {
    rt.setEndpoints({});
  }
});

test('connection refused and timeouts raise with the call, URL and cause', async () => {
  const dead = await startHttpServer();
  const deadUrl = dead.url;
  await dead.close();
  const r = await runLua('refused.lua', `local net = require("net")\n\nnet.get("${deadUrl}/x")\n`);
  assert.equal(r.state, 'error');
  assert.equal(r.error?.location, 'refused.lua:3');
  assert.equal(r.error?.message, `refused.lua:3: net.get ${deadUrl}/x: connect ECONNREFUSED 127.0.0.1:${dead.port}`);
  const t = await runLua('slow.lua', `local net = require("net")\nnet.get("${a.url}/slow", {timeout="200ms"})\n`);
  assert.equal(t.state, 'error');
  assert.match(t.error?.message ?? '', /^slow\.lua:2: net\.get .*\/slow: timeout after 200ms$/);
});

test('wait_http polls until the status matches, and gives up after its timeout', async () => {
  let n = 0;
  const flaky = await startHttpServer((_req, res) => {
    n++;
    res.writeHead(n < 3 ? 503 : 200);
    res.end('ok');
  });
  try {
    const r = await runLua('wait.lua', `local net = require("net")\nlocal r = net.wait_http("${flaky.url}/health", {timeout="10s", interval="20ms"})\nexpect(r.code):to_be(200)\n`);
    assert.equal(r.state, 'passed', r.error?.message);
    assert.ok(n >= 3);
    const g = await runLua('giveup.lua', `local net = require("net")\nnet.wait_http("${a.url}/status/500", {timeout="300ms", interval="50ms"})\n`);
    assert.equal(g.state, 'error');
    assert.match(g.error?.message ?? '', /net\.wait_http .*: no status 200 within 300ms \(last: status 500\)/);
  } finally {
    await flaky.close();
  }
});
