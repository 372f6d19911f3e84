import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { cli, REPO_ROOT } from '../helpers/cli';

const SERVER = path.join(REPO_ROOT, 'fixtures', 'apps', 'mock-app', 'server.js');

let dir: string;

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-jar-ws-'));
  fs.writeFileSync(
    path.join(dir, 'topas.yaml'),
    ['name: jarapp', 'services:', '  - name: app', `    command: ["node", ${JSON.stringify(SERVER)}]`, '    port: 8080', '    ready: { http: /healthz, timeout: 30s }', ''].join('\n'),
  );
});

after(() => fs.rmSync(dir, { recursive: true, force: true }));

function write(name: string, lua: string[]): string {
  fs.writeFileSync(path.join(dir, name), lua.join('\n') + '\n');
  return name;
}

describe('cookies and WebSocket in net, against mock-app on the local backend', () => {
  test('a cookie jar per scenario: login flow, domain/path/expiry/Secure, net.cookies, clear_cookies, cookies=false', async () => {
    const name = write('cookies.lua', [
      'local net = require("net")',
      'local sut = require("sut")',
      'step("the session cookie is kept and sent back", function()',
      '  expect(net.get("http://app/me").status):to_be(401)',
      '  expect(net.get("http://app/login?user=bob&secure=1").status):to_be(200)',
      '  local me = net.get("http://app/me")',
      '  expect(me.status):to_be(200)',
      '  expect(me:json().user):to_be("bob")',
      '  local sent = me:json().cookie',
      '  expect(sent):to_match("session=%x+")',
      '  expect(sent):to_match("theme=dark")',
      '  -- Path=/api/other is not sent to /me, Max-Age=0 is never kept, Secure is not sent over http',
      '  expect(sent:find("scoped", 1, true)):to_be_nil()',
      '  expect(sent:find("gone", 1, true)):to_be_nil()',
      '  expect(sent:find("secret", 1, true)):to_be_nil()',
      '  -- the same host by its address is another site',
      '  expect(net.get(sut.endpoint("app") .. "/me").status):to_be(401)',
      'end)',
      'step("net.cookies reads the jar", function()',
      '  local c = net.cookies("http://app/")',
      '  expect(c.theme):to_be("dark")',
      '  expect(c.session):to_match("^%x+$")',
      '  expect(c.scoped):to_be_nil()',
      '  expect(c.secret):to_be_nil()',
      '  expect(net.cookies("http://app/api/other/x").scoped):to_be("1")',
      '  -- a Secure cookie set over plain http is refused, as browsers do',
      '  expect(net.cookies("https://app/").secret):to_be_nil()',
      '  local all = net.cookies()',
      '  expect(all.theme):to_be("dark")',
      '  expect(all.secret):to_be_nil()',
      '  expect(all.gone):to_be_nil()',
      'end)',
      'step("cookies=false leaves the jar out of one request", function()',
      '  expect(net.get("http://app/me", {cookies=false}).status):to_be(401)',
      '  expect(net.get("http://app/me").status):to_be(200)',
      'end)',
      'step("an expired cookie is dropped; clear_cookies empties the jar", function()',
      '  net.get("http://app/logout")',
      '  expect(net.get("http://app/me").status):to_be(401)',
      '  expect(net.cookies("http://app/").session):to_be_nil()',
      '  net.get("http://app/login")',
      '  expect(net.get("http://app/me").status):to_be(200)',
      '  net.clear_cookies()',
      '  expect(next(net.cookies())):to_be_nil()',
      '  expect(net.get("http://app/me").status):to_be(401)',
      'end)',
    ]);
    const second = write('cookies-fresh.lua', ['local net = require("net")', 'step("another scenario starts with an empty jar", function()', '  expect(next(net.cookies())):to_be_nil()', '  expect(net.get("http://app/me").status):to_be(401)', 'end)']);
    const r = await cli(['run', name, second, '--app', 'topas.yaml', '--backend', 'local'], { cwd: dir });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /2 passed/);
  });

  test('net.ws: echo, tables as JSON, headers and subprotocols, receive timeout and close, cookies on the handshake', async () => {
    const name = write('ws.lua', [
      'local net = require("net")',
      'local sut = require("sut")',
      'step("echo", function()',
      '  local ws = net.ws("ws://app/ws", {protocols={"chat", "other"}, headers={Authorization="Bearer t1"}})',
      '  expect(ws.protocol):to_be("chat")',
      '  local hello = json.decode(ws:receive("2s"))',
      '  expect(hello.protocol):to_be("chat")',
      '  expect(hello.auth):to_be("Bearer t1")',
      '  ws:send("ping")',
      '  expect(ws:receive("2s")):to_be("ping")',
      '  ws:send({a=1, list={1,2}})',
      '  expect(json.decode(ws:receive(2)).list[2]):to_be(2)',
      '  ws:send("twice")',
      '  expect(ws:receive(2)):to_be("twice")',
      '  expect(ws:receive(2)):to_be("twice")',
      '  local m, why = ws:receive(0.2)',
      '  expect(m):to_be_nil()',
      '  expect(why):to_be("timeout")',
      '  ws:send("close")',
      '  local m2, why2 = ws:receive("2s")',
      '  expect(m2):to_be_nil()',
      '  expect(why2):to_be("closed")',
      '  local ok, err = pcall(function() ws:send("late") end)',
      '  expect(ok):to_be(false)',
      '  expect(tostring(err)):to_match("closed")',
      '  ws:close()',
      'end)',
      'step("the jar rides the handshake; service address works too", function()',
      '  net.get("http://app/login?user=wsuser")',
      '  local ws = net.ws("ws://app/ws")',
      '  expect(json.decode(ws:receive(2)).cookie):to_match("session=")',
      '  ws:close()',
      '  local direct = net.ws((sut.endpoint("app"):gsub("^http", "ws")) .. "/ws")',
      '  expect(json.decode(direct:receive(2)).hello):to_be(true)',
      '  direct:close()',
      'end)',
      'step("a failed handshake is an error", function()',
      '  local ok, err = pcall(net.ws, "ws://app/nope")',
      '  expect(ok):to_be(false)',
      '  expect(tostring(err)):to_match("net.ws ws://app/nope")',
      'end)',
    ]);
    const r = await cli(['run', name, '--app', 'topas.yaml', '--backend', 'local'], { cwd: dir });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /1 passed/);
  });

  test('under topas load: a jar per VU and WebSocket messages in the summary (ws_msgs_sent, ws_msgs_received, ws_connecting)', async () => {
    const name = write('load-ws.lua', [
      'local net = require("net")',
      'local sut = require("sut")',
      'local logins = require("metrics").counter("logins")',
      'local me = "vu" .. math.random(1, 1000000000)',
      'options = { rate = 20, duration = "2s", max_vus = 10, thresholds = { checks = { "rate==1" } } }',
      'function iteration()',
      '  if net.get("http://app/me", {name="me"}).status == 401 then',
      '    net.get("http://app/login?user=" .. me, {name="login"})',
      '    logins:add(1)',
      '  end',
      '  check("logged in", net.get("http://app/me", {name="me"}).status == 200)',
      '  local ws = net.ws("ws://app/ws")',
      '  ws:receive(2)',
      '  ws:send("ping")',
      '  check("echo", ws:receive(2) == "ping")',
      '  ws:close()',
      'end',
    ]);
    const r = await cli(['load', name, '--app', 'topas.yaml', '--backend', 'local', '--json'], { cwd: dir });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const summary = JSON.parse(r.stdout) as { metrics: Record<string, { values: Record<string, number | null> }> };
    const sent = summary.metrics.ws_msgs_sent?.values.count ?? 0;
    const received = summary.metrics.ws_msgs_received?.values.count ?? 0;
    assert.ok(sent >= 20, `ws_msgs_sent ${sent}`);
    // each connection: the greeting and the echo
    assert.equal(received, sent * 2);
    assert.equal(summary.metrics.ws_connecting?.values.count, sent);
    assert.ok((summary.metrics.ws_connecting?.values['p(95)'] ?? 0) > 0);
    // logins: one per VU (the jar is the VU's, kept between its iterations)
    const logins = summary.metrics.logins?.values.count ?? 0;
    const vusMax = summary.metrics.vus_max?.values.value ?? 0;
    assert.ok(logins >= 1 && logins <= vusMax, `logins ${logins}, vus_max ${vusMax}`);
    assert.ok((summary.metrics.iterations?.values.count ?? 0) > logins);
  });
});
