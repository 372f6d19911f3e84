import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { routeRpc } from '../../src/run/rpc-router';
import { ShapeController } from '../../src/shape/shape-controller';
import { ProxyFleet } from '../../src/shape/proxy-fleet';
import { startPlaybookShaping } from '../../src/shape/playbook-shaping';
import { createShapeModule } from '../../src/lua/modules/shape';
import type { LuaModuleContext } from '../../src/lua/modules/module-types';

function moduleWith(rpc: LuaModuleContext['rpc']) {
  const ctx = { rpc, signal: new AbortController().signal } as unknown as LuaModuleContext;
  return createShapeModule(ctx).exports;
}

test('shape module validates in the worker and sends a ShapeCall to shape.apply', async () => {
  const calls: unknown[][] = [];
  const m = moduleWith(async (method, args) => {
    calls.push([method, ...args]);
    return undefined;
  });
  await m.latency('api', '200ms', { jitter: '20ms' });
  await m.http_fault('api', { status: 503, rate: 0.5, path: '/api/*' });
  await m.reset('api', null);
  assert.deepEqual(calls, [
    ['shape.apply', { service: 'api', change: { kind: 'latency', delayMs: 200, jitterMs: 20 } }],
    ['shape.apply', { service: 'api', change: { kind: 'http_fault', status: 503, rate: 0.5, path: '/api/*' } }],
    ['shape.apply', { service: 'api', change: { kind: 'reset' } }],
  ]);
  assert.throws(() => m.latency('api', 'soon'), /shape\.latency/);
  assert.throws(() => m.loss('api', 2), /probability/);
});

test('shape.* rpc reaches the controller; unknown services name the known ones', async () => {
  const controller = new ShapeController({ services: ['api', 'db'] });
  const rpc = routeRpc({ sut: async () => undefined, sync: () => undefined, shape: () => controller });
  const m = moduleWith((method, args) => rpc('s1', method, args));
  await m.down('db');
  assert.deepEqual(controller.state('db'), { down: true });
  await assert.rejects(Promise.resolve(m.down('dbb')), /unknown service "dbb".*did you mean "db"/);
  const noSut = routeRpc({ sut: async () => undefined, sync: () => undefined });
  await assert.rejects(noSut('s1', 'shape.apply', [{ service: 'api', change: { kind: 'down' } }]), /no system under test/);
});

test('a fleet registers every proxy with the controller and closes them all', async () => {
  const controller = new ShapeController({ services: ['api'] });
  const fleet = new ProxyFleet({ controller });
  const seen: string[] = [];
  controller.onChange((e) => seen.push(`${e.service}:${e.description}`));
  controller.apply('api', { kind: 'latency', delayMs: 50, jitterMs: 0 });
  const dep = await fleet.dependentProxy('api', 'main', 'http', () => []);
  const rep = await fleet.replicaProxy('api', 'r1', 'main', 'http', () => undefined);
  assert.notEqual(dep.port, rep.port);
  // proxies registered later take the service's current shape
  assert.deepEqual(controller.proxies('api').map((p) => p.stats().shape), [{ latency: { delayMs: 50, jitterMs: 0 } }, { latency: { delayMs: 50, jitterMs: 0 } }]);
  await fleet.dropReplica('r1');
  assert.equal(controller.proxies('api').length, 1);
  await fleet.close();
  assert.equal(controller.proxies('api').length, 0);
  await assert.rejects(
    new Promise((resolve, reject) => net.connect(dep.port, dep.host).on('connect', resolve).on('error', reject)),
    /ECONNREFUSED/,
  );
  assert.deepEqual(seen, ['api:latency 50ms']);
});

test('playbook shaping applies on: steps when the signal comes and drops them after stop', async () => {
  const controller = new ShapeController({ services: ['api', 'db'] });
  let fire!: () => void;
  const signalled = new Promise<void>((r) => (fire = r));
  const lines: string[] = [];
  const run = startPlaybookShaping(
    [
      { on: 'go', service: 'db', action: 'latency', args: ['200ms', {}] },
      { atMs: 3_600_000, service: 'api', action: 'down', args: [] },
    ],
    { controller, waitSignal: (name) => (name === 'go' ? signalled : new Promise(() => undefined)), log: (l) => lines.push(l) },
  );
  assert.deepEqual(controller.state('db'), {});
  fire();
  await signalled;
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(controller.state('db'), { latency: { delayMs: 200, jitterMs: 0 } });
  run.stop();
  assert.deepEqual(controller.state('api'), {});
  assert.match(lines[0], /on go: db -> latency 200ms/);
  assert.throws(() => startPlaybookShaping([{ on: 'x', service: 'db', action: 'loss', args: [7] }], { controller, waitSignal: async () => undefined, log: () => undefined }), /shape\.loss/);
});

test('an http-mode proxy does not hold a non-HTTP protocol waiting for a blank line', async () => {
  const echo = net.createServer((s) => s.pipe(s));
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
  const port = (echo.address() as net.AddressInfo).port;
  const controller = new ShapeController({ services: ['redis'] });
  const fleet = new ProxyFleet({ controller });
  try {
    const a = await fleet.replicaProxy('redis', 'r1', 'main', 'http', () => ({ host: '127.0.0.1', port }));
    const reply = await new Promise<string>((resolve, reject) => {
      const c = net.connect(a.port, a.host, () => c.write('*1\r\n$4\r\nPING\r\n'));
      c.once('data', (d) => {
        resolve(d.toString());
        c.destroy();
      });
      c.on('error', reject);
      setTimeout(() => reject(new Error('no echo within 2s')), 2000).unref();
    });
    assert.equal(reply, '*1\r\n$4\r\nPING\r\n');
  } finally {
    await fleet.close();
    await new Promise((r) => echo.close(r));
  }
});
