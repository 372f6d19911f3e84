import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as netServer from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { cli, REPO_ROOT } from '../helpers/cli';

const SERVER = path.join(REPO_ROOT, 'fixtures', 'apps', 'mock-app', 'server.js');

/** A CA, a server certificate for localhost / 127.0.0.1 and a client certificate, made with the openssl CLI. */
function makeCerts(dir: string): void {
  const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca-key.pem', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=topas test CA');
  fs.writeFileSync(path.join(dir, 'server.ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  ssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server-key.pem', '-out', 'server.csr', '-subj', '/CN=localhost');
  ssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca-key.pem', '-CAcreateserial', '-out', 'server.pem', '-days', '2', '-extfile', 'server.ext');
  fs.writeFileSync(path.join(dir, 'client.ext'), 'extendedKeyUsage=clientAuth\n');
  ssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'client-key.pem', '-out', 'client.csr', '-subj', '/CN=topas-client');
  ssl('x509', '-req', '-in', 'client.csr', '-CA', 'ca.pem', '-CAkey', 'ca-key.pem', '-CAcreateserial', '-out', 'client.pem', '-days', '2', '-extfile', 'client.ext');
}

let dir: string;

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-tls-'));
  makeCerts(dir);
  fs.writeFileSync(
    path.join(dir, 'topas.yaml'),
    [
      'name: tlsapp',
      'services:',
      '  - name: secure',
      `    command: ["node", ${JSON.stringify(SERVER)}]`,
      '    port: 8443',
      '    tls: true',
      '    ports: { grpc: { port: 9443, tls: true } }',
      '    env:',
      `      TLS_CERT: ${JSON.stringify(path.join(dir, 'server.pem'))}`,
      `      TLS_KEY: ${JSON.stringify(path.join(dir, 'server-key.pem'))}`,
      `      TLS_CLIENT_CA: ${JSON.stringify(path.join(dir, 'ca.pem'))}`,
      '      GRPC_TLS: "1"',
      '    ready: { http: /healthz, timeout: 30s }',
      '  - name: plain',
      `    command: ["node", ${JSON.stringify(SERVER)}]`,
      '    port: 8080',
      '    ports: { grpc: 9090 }',
      '    ready: { http: /healthz, timeout: 30s }',
      '',
    ].join('\n'),
  );
});

after(() => fs.rmSync(dir, { recursive: true, force: true }));

async function runScenario(name: string, lua: string) {
  fs.writeFileSync(path.join(dir, name), lua);
  return cli(['run', name, '--app', 'topas.yaml', '--backend', 'local'], { cwd: dir });
}

describe('TLS in net and net.grpc, against a local tls: true service with a CA made in the test', () => {
  test('https://service-name, ca=, insecure=, client certificates, server_name=, sut.endpoint and gRPC over TLS', async () => {
    const r = await runScenario(
      'tls.lua',
      [
        'local net = require("net")',
        'local sut = require("sut")',
        'step("endpoints say https for tls ports", function()',
        '  expect(sut.endpoint("secure")):to_match("^https://127%.0%.0%.1:%d+$")',
        '  expect(sut.endpoint("secure", "grpc")):to_match("^https://127%.0%.0%.1:%d+$")',
        '  expect(sut.endpoint("plain")):to_match("^http://")',
        'end)',
        'step("https://service-name verified against ca=", function()',
        '  local r = net.get("https://secure/whoami", {ca="ca.pem"})',
        '  expect(r.status):to_be(200)',
        '  expect(r:json().tls):to_be(true)',
        '  expect(r:json().client):to_be(nil)',
        '  expect(net.get(sut.endpoint("secure") .. "/healthz", {ca="ca.pem"}).status):to_be(200)',
        'end)',
        'step("an unknown CA fails; insecure=true skips verification", function()',
        '  local ok, err = pcall(net.get, "https://secure/whoami")',
        '  expect(ok):to_be(false)',
        '  expect(tostring(err)):to_match("certificate")',
        '  expect(net.get("https://secure/whoami", {insecure=true}).status):to_be(200)',
        'end)',
        'step("a client certificate is presented", function()',
        '  local r = net.get("https://secure/whoami", {ca="ca.pem", cert="client.pem", key="client-key.pem"})',
        '  expect(r:json().client):to_be("topas-client")',
        'end)',
        'step("server_name is the name verified", function()',
        '  expect(net.get("https://secure/whoami", {ca="ca.pem", server_name="localhost"}).status):to_be(200)',
        '  local ok, err = pcall(net.get, "https://secure/whoami", {ca="ca.pem", server_name="other.example"})',
        '  expect(ok):to_be(false)',
        '  expect(tostring(err)):to_match("other%.example")',
        'end)',
        'step("wss:// with the TLS options; Secure cookies kept over https", function()',
        '  local ws = net.ws("wss://secure/ws", {ca="ca.pem"})',
        '  expect(json.decode(ws:receive(2)).hello):to_be(true)',
        '  ws:send("over tls")',
        '  expect(ws:receive(2)):to_be("over tls")',
        '  ws:close()',
        '  local ok = pcall(net.ws, "wss://secure/ws", {timeout="3s"})',
        '  expect(ok):to_be(false)',
        '  net.get("https://secure/login?secure=1", {ca="ca.pem"})',
        '  expect(net.cookies("https://secure/").secret):to_be("1")',
        '  expect(net.cookies("http://secure/").secret):to_be_nil()',
        '  expect(net.get("https://secure/me", {ca="ca.pem"}):json().cookie):to_match("secret=1")',
        'end)',
        'step("gRPC over TLS on a tls port, plaintext on a plain one", function()',
        '  local r = net.grpc("secure", "topas.EchoService/Echo", {message="hi"}, {ca="ca.pem", timeout="5s"})',
        '  expect(r.message):to_be("hi")',
        '  local m = net.grpc(sut.endpoint("secure", "grpc"), "topas.EchoService/Echo", {message="mtls"}, {ca="ca.pem", cert="client.pem", key="client-key.pem", timeout="5s"})',
        '  expect(m.message):to_be("mtls")',
        '  expect(net.grpc("secure", "topas.EchoService/Echo", {message="sni"}, {ca="ca.pem", server_name="localhost", timeout="5s"}).message):to_be("sni")',
        '  expect(pcall(net.grpc, "secure", "topas.EchoService/Echo", {message="x"}, {ca="ca.pem", server_name="other.example", timeout="1s"})):to_be(false)',
        '  expect(pcall(net.grpc, "secure", "topas.EchoService/Echo", {message="x"}, {ca="ca.pem", tls=false, timeout="1s"})):to_be(false)',
        '  local i = net.grpc("secure", "topas.EchoService/Echo", {message="insecure"}, {insecure=true, timeout="5s"})',
        '  expect(i.message):to_be("insecure")',
        '  local ok = pcall(net.grpc, "secure", "topas.EchoService/Echo", {message="x"}, {timeout="1s"})',
        '  expect(ok):to_be(false)',
        '  expect(net.grpc("plain", "topas.EchoService/Echo", {message="plain"}, {timeout="5s"}).message):to_be("plain")',
        'end)',
        '',
      ].join('\n'),
    );
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /✓ .*gRPC over TLS/);
  });
});

describe('gRPC client and bidirectional streaming, and the reflection timeout', () => {
  test('net.grpc sends a list of messages to a streaming method; reflection stops at the given timeout', async () => {
    // a server that accepts connections and never answers: reflection has to give up at `timeout`
    const blackhole = netServer.createServer(() => undefined);
    await new Promise<void>((resolve) => blackhole.listen(0, '127.0.0.1', resolve));
    const port = (blackhole.address() as netServer.AddressInfo).port;
    const proto = path.join(REPO_ROOT, 'fixtures', 'apps', 'mock-app', 'echo.proto');
    try {
      fs.writeFileSync(
        path.join(dir, 'streams.lua'),
        [
          'local net = require("net")',
          'step("client streaming", function()',
          '  local r = net.grpc("plain", "topas.EchoService/EchoCollect", {{message="a"}, {message="b"}, {message="c"}}, {timeout="5s"})',
          '  expect(r.message):to_be("a,b,c")',
          `  expect(net.grpc("plain", "topas.EchoService/EchoCollect", {}, {proto=${JSON.stringify(proto)}, timeout="5s"}).message):to_be("")`,
          '  expect(net.grpc("secure", "topas.EchoService/EchoCollect", {{message="x"}, {message="y"}}, {ca="ca.pem", timeout="5s"}).message):to_be("x,y")',
          'end)',
          'step("bidirectional streaming", function()',
          '  local r = net.grpc("plain", "topas.EchoService/EchoChat", {{message="hi"}, {message="yo"}}, {timeout="5s"})',
          '  expect(#r):to_be(2)',
          '  expect(r[1].message):to_be("HI")',
          '  expect(r[2].message):to_be("YO")',
          `  expect(#net.grpc("plain", "topas.EchoService/EchoChat", {}, {proto=${JSON.stringify(proto)}})):to_be(0)`,
          'end)',
          'step("a streaming method wants a list of messages", function()',
          '  local ok, err = pcall(net.grpc, "plain", "topas.EchoService/EchoCollect", {message="a"}, {timeout="5s"})',
          '  expect(ok):to_be(false)',
          '  expect(tostring(err)):to_match("list of messages")',
          'end)',
          'step("reflection honours timeout", function()',
          '  local t0 = os.time()',
          '  local ok, err = pcall(net.grpc, "127.0.0.1:" .. env("BLACKHOLE_PORT"), "topas.EchoService/Echo", {message="x"}, {timeout="500ms"})',
          '  expect(ok):to_be(false)',
          '  expect(tostring(err)):to_match("DEADLINE_EXCEEDED")',
          '  expect(os.time() - t0):to_be_less_than(3)',
          'end)',
          '',
        ].join('\n'),
      );
      const r = await cli(['run', 'streams.lua', '--app', 'topas.yaml', '--backend', 'local', '--env', `BLACKHOLE_PORT=${port}`], { cwd: dir });
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.match(r.stdout, /✓ .*reflection honours timeout/);
    } finally {
      blackhole.close();
    }
  });
});
