import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { LuaRuntime } from '../../src/lua/engine';
import type { EndpointMap } from '../../src/backends/backend';
import type { ScenarioResult } from '../../src/run/scenario-types';
import { createGrpcTargetResolver } from '../../src/lua/modules/grpc';
import { REPO_ROOT } from '../helpers/cli';

const ECHO_PROTO = path.join(REPO_ROOT, 'fixtures', 'apps', 'mock-app', 'echo.proto');
import { runLuaSource } from '../helpers/lua-scenario';

let dir: string;
let rt: LuaRuntime;
let app: ChildProcess;
let appGrpc: string;
let custom: grpc.Server;
let customAddr: string;
let endpoints: EndpointMap;

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

function runLua(name: string, source: string): Promise<ScenarioResult> {
  return runLuaSource(rt, dir, name, source, endpoints);
}

/** The mock app as its own process (gRPC needs no database). */
async function startMockApp(): Promise<{ child: ChildProcess; grpcAddr: string }> {
  const [port, grpcPort] = [await freePort(), await freePort()];
  const child = spawn(process.execPath, [path.join(REPO_ROOT, 'fixtures', 'apps', 'mock-app', 'server.js')], {
    env: { ...process.env, PORT: String(port), PORT_GRPC: String(grpcPort), APP_VERSION: '2.0.0' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const deadline = Date.now() + 20_000;
  while (!/grpc listening/.test(out)) {
    if (Date.now() > deadline || child.exitCode !== null) throw new Error(`mock-app did not start: ${out}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return { child, grpcAddr: `127.0.0.1:${grpcPort}` };
}

/** Echo that answers with the metadata it got, and sleeps when asked: for metadata and deadlines. */
async function startCustomServer(): Promise<{ server: grpc.Server; addr: string }> {
  const def = protoLoader.loadSync(ECHO_PROTO, { keepCase: true, defaults: true });
  const proto = grpc.loadPackageDefinition(def) as unknown as { topas: { EchoService: { service: grpc.ServiceDefinition } } };
  const server = new grpc.Server();
  server.addService(proto.topas.EchoService.service, {
    Echo(call: grpc.ServerUnaryCall<{ message: string }, unknown>, cb: grpc.sendUnaryData<unknown>) {
      if (call.request.message === 'slow') {
        const t = setTimeout(() => cb(null, { message: 'late' }), 3000);
        call.on('cancelled', () => clearTimeout(t));
        return;
      }
      if (call.request.message === 'deny') return cb({ code: grpc.status.PERMISSION_DENIED, details: 'no entry for you' });
      cb(null, { message: String(call.metadata.get('x-trace')[0] ?? ''), version: String(call.metadata.get('authorization')[0] ?? '') });
    },
    EchoStream(call: grpc.ServerWritableStream<{ count: number }, unknown>) {
      call.write({ message: 'one' });
      call.emit('error', { code: grpc.status.RESOURCE_EXHAUSTED, details: 'stream broke after one' });
    },
  });
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
  return { server, addr: `127.0.0.1:${port}` };
}

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-grpc-'));
  fs.copyFileSync(ECHO_PROTO, path.join(dir, 'echo.proto'));
  const m = await startMockApp();
  app = m.child;
  appGrpc = m.grpcAddr;
  const c = await startCustomServer();
  custom = c.server;
  customAddr = c.addr;
  endpoints = {
    api: { kind: 'service', urls: ['http://127.0.0.1:1'], extra: { grpc: [appGrpc] } },
    other: { kind: 'service', urls: [], extra: { rpc: [customAddr] } },
    main: { kind: 'database', urls: [], extra: {} },
  };
  rt = await LuaRuntime.create({ onLog: () => undefined, onEvent: () => undefined, rpc: async () => undefined });
});

after(async () => {
  rt?.close();
  custom?.forceShutdown();
  if (app && app.exitCode === null) {
    const gone = new Promise((r) => app.once('exit', r));
    app.kill('SIGTERM');
    await gone;
  }
  assert.notEqual(app.exitCode ?? app.signalCode, null, 'mock-app is still running');
  fs.rmSync(dir, { recursive: true, force: true });
});

test('reflection and .proto give the same table, unary and server streaming', async () => {
  const r = await runLua(
    'same.lua',
    [
      'local net = require("net")',
      'local a = net.grpc("api", "topas.EchoService/Echo", {message = "hi"})',
      'local b = net.grpc("api", "topas.EchoService/Echo", {message = "hi"}, {proto = "echo.proto"})',
      'expect(a):to_equal({message = "hi", version = "2.0.0"})',
      'expect(b):to_equal(a)',
      'local s1 = net.grpc("grpc://api", "topas.EchoService/EchoStream", {message = "x", count = 3})',
      'local s2 = net.grpc("api:grpc", "/topas.EchoService/EchoStream", {message = "x", count = 3}, {proto = "echo.proto"})',
      'expect(#s1):to_be(3)',
      'expect(s1[2]):to_equal({message = "x", version = "2.0.0"})',
      'expect(s2):to_equal(s1)',
      `local direct = net.grpc("${appGrpc}", "topas.EchoService/Echo", {})`,
      'expect(direct):to_equal({message = "", version = "2.0.0"})',
    ].join('\n'),
  );
  assert.equal(r.state, 'passed', r.error?.message);
});

test('an unknown method is UNIMPLEMENTED, from reflection and from the server itself', async () => {
  fs.copyFileSync(path.join(REPO_ROOT, 'fixtures', 'grpc', 'echo-plus-missing.proto'), path.join(dir, 'plus.proto'));
  const cases: [string, RegExp][] = [
    ['net.grpc("api", "topas.EchoService/Nope", {})', /^nope\.lua:2: net\.grpc api topas\.EchoService\/Nope: UNIMPLEMENTED \(12\): unknown method Nope of topas\.EchoService in the server's reflection .*\(methods: Echo, EchoStream, EchoCollect, EchoChat\)$/],
    ['net.grpc("api", "topas.Nope/Echo", {})', /^nope\.lua:2: net\.grpc api topas\.Nope\/Echo: UNIMPLEMENTED \(12\): unknown service topas\.Nope/],
    ['net.grpc("api", "topas.EchoService/Missing", {message = "x"}, {proto = "plus.proto"})', /^nope\.lua:2: net\.grpc api topas\.EchoService\/Missing: UNIMPLEMENTED \(12\): The server does not implement the method \/topas\.EchoService\/Missing$/],
  ];
  for (const [call, want] of cases) {
    const r = await runLua('nope.lua', `local net = require("net")\n${call}\n`);
    assert.equal(r.state, 'error');
    assert.match(r.error?.message ?? '', want);
  }
});

test('metadata, deadlines and non-OK statuses', async () => {
  const r = await runLua(
    'meta.lua',
    [
      'local net = require("net")',
      'local r = net.grpc("other", "topas.EchoService/Echo", {message = "m"}, {proto = "echo.proto", metadata = {["X-Trace"] = "t-1", authorization = "Bearer abc"}})',
      'expect(r):to_equal({message = "t-1", version = "Bearer abc"})',
      'local ok, err = pcall(net.grpc, "other", "topas.EchoService/Echo", {message = "slow"}, {proto = "echo.proto", timeout = "200ms"})',
      'expect(ok):to_be(false)',
      'expect(err):to_contain("DEADLINE_EXCEEDED (4)")',
      'ok, err = pcall(net.grpc, "other", "topas.EchoService/Echo", {message = "deny"}, {proto = "echo.proto"})',
      'expect(err):to_contain("PERMISSION_DENIED (7): no entry for you")',
      'ok, err = pcall(net.grpc, "other", "topas.EchoService/EchoStream", {}, {proto = "echo.proto"})',
      'expect(err):to_contain("RESOURCE_EXHAUSTED (8): stream broke after one")',
      '-- the custom server has no reflection service',
      'ok, err = pcall(net.grpc, "other", "topas.EchoService/Echo", {})',
      'expect(err):to_contain("UNIMPLEMENTED (12): the server offers no reflection service")',
      'ok, err = pcall(net.grpc, "main", "topas.EchoService/Echo", {})',
      'expect(err):to_contain(\'"main" is a database of the app, not a service\')',
      'ok, err = pcall(net.grpc, "api", "topas.EchoService/Echo", {}, {proto = "missing.proto"})',
      'expect(err):to_contain("proto: file not found: missing.proto")',
    ].join('\n'),
  );
  assert.equal(r.state, 'passed', r.error?.message);
});

test('a service target resolves to its grpc port, round-robin over replicas', () => {
  const resolve = createGrpcTargetResolver(() => ({
    api: { kind: 'service', urls: [], extra: { grpc: ['127.0.0.1:1001', '127.0.0.1:1002'], admin: ['127.0.0.1:2001'] } },
    solo: { kind: 'service', urls: [], extra: { rpc: ['127.0.0.1:3001'] } },
    many: { kind: 'service', urls: [], extra: { a: ['127.0.0.1:4001'], b: ['127.0.0.1:4002'] } },
  }));
  assert.deepEqual(['api', 'api', 'api'].map((t) => resolve(t).address), ['127.0.0.1:1001', '127.0.0.1:1002', '127.0.0.1:1001']);
  assert.equal(resolve('api:admin').address, '127.0.0.1:2001');
  assert.equal(resolve('solo').address, '127.0.0.1:3001');
  assert.equal(resolve('localhost:50051').address, 'localhost:50051');
  assert.throws(() => resolve('many'), /service "many" has several ports \(a, b\); name one: "many:a"/);
  assert.throws(() => resolve('nowhere'), /"nowhere" is neither a service of the app nor host:port/);
});
