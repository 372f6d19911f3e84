import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { TopasError } from '../../src/errors';
import { parseShapeCall, shapeHttpFault, shapeLatency } from '../../src/shape/shape-calls';
import { ShapeController } from '../../src/shape/shape-controller';
import { ShapingProxy } from '../../src/shape/shaping-proxy';

function scenarioError(re: RegExp) {
  return (e: unknown) => e instanceof TopasError && e.code === 'SCENARIO_FAILED' && re.test(e.message);
}

describe('shape call validation', () => {
  test('valid calls become structured changes', () => {
    assert.deepEqual(parseShapeCall('latency', ['api', '200ms', { jitter: '20ms' }]), {
      service: 'api',
      change: { kind: 'latency', delayMs: 200, jitterMs: 20 },
    });
    assert.deepEqual(shapeLatency('api', 0.5), { service: 'api', change: { kind: 'latency', delayMs: 500, jitterMs: 0 } });
    assert.deepEqual(parseShapeCall('bandwidth', ['api', '1mbit']).change, { kind: 'bandwidth', bytesPerSecond: 125_000 });
    assert.deepEqual(parseShapeCall('loss', ['api', 0.05]).change, { kind: 'loss', probability: 0.05 });
    assert.deepEqual(parseShapeCall('down', ['api']).change, { kind: 'down' });
    assert.deepEqual(parseShapeCall('timeout', ['api']).change, { kind: 'timeout' });
    assert.deepEqual(parseShapeCall('reset', ['api']).change, { kind: 'reset' });
    assert.deepEqual(parseShapeCall('http_fault', ['api', { status: 503, rate: 0.2, path: '/users/*' }]).change, {
      kind: 'http_fault',
      status: 503,
      rate: 0.2,
      path: '/users/*',
    });
    assert.deepEqual(shapeHttpFault('api', new Map<string, unknown>([['status', 500]])).change, { kind: 'http_fault', status: 500, rate: 1 });
  });

  test('bad arguments raise clear errors naming the call', () => {
    assert.throws(() => parseShapeCall('latency', [undefined, '1s']), scenarioError(/^shape\.latency: expected a service name/));
    assert.throws(() => parseShapeCall('latency', ['api', 'soon']), scenarioError(/^shape\.latency: delay: expected a duration/));
    assert.throws(() => parseShapeCall('latency', ['api', '1s', { jiter: '1ms' }]), scenarioError(/unknown option "jiter" \(did you mean "jitter"\?\)/));
    assert.throws(() => parseShapeCall('latency', ['api', '1s', 'x']), scenarioError(/options must be a table/));
    assert.throws(() => parseShapeCall('bandwidth', ['api', '1 furlong']), scenarioError(/^shape\.bandwidth: rate: expected a rate like "1mbit"/));
    assert.throws(() => parseShapeCall('bandwidth', ['api']), scenarioError(/got nil/));
    assert.throws(() => parseShapeCall('loss', ['api', 1.5]), scenarioError(/probability between 0 and 1/));
    assert.throws(() => parseShapeCall('loss', ['api', '5%']), scenarioError(/got "5%"/));
    assert.throws(() => parseShapeCall('http_fault', ['api']), scenarioError(/options table/));
    assert.throws(() => parseShapeCall('http_fault', ['api', { status: 99 }]), scenarioError(/status must be an HTTP status code/));
    assert.throws(() => parseShapeCall('http_fault', ['api', { status: 503, rate: 2 }]), scenarioError(/rate must be a number between 0 and 1/));
    assert.throws(() => parseShapeCall('http_fault', ['api', { status: 503, path: '^/x%' }]), scenarioError(/bad Lua pattern/));
    assert.throws(() => parseShapeCall('down', ['api', 'extra']), scenarioError(/takes at most 1 argument/));
    assert.throws(() => parseShapeCall('latancy', ['api', '1s']), scenarioError(/did you mean shape\.latency/));
  });
});

describe('ShapeController', () => {
  test('applies to every proxy of a service, new proxies inherit, history is timestamped', async () => {
    let t = 1000;
    const c = new ShapeController({ services: ['api', 'db'], now: () => t++ });
    const targets = () => [{ host: '127.0.0.1', port: 1 }];
    const a1 = new ShapingProxy({ name: 'api#1', mode: 'http', targets });
    const a2 = new ShapingProxy({ name: 'api#2', mode: 'http', targets });
    c.register('api', a1);
    c.applyCall(parseShapeCall('latency', ['api', '200ms']));
    c.register('api', a2);
    assert.deepEqual(a2.stats().shape, { latency: { delayMs: 200, jitterMs: 0 } });
    c.apply('api', { kind: 'loss', probability: 0.5 });
    for (const p of [a1, a2]) assert.deepEqual(p.stats().shape, { latency: { delayMs: 200, jitterMs: 0 }, loss: { probability: 0.5 } });
    c.reset('api');
    assert.deepEqual(a1.stats().shape, {});
    c.apply('db', { kind: 'down' });
    assert.deepEqual(c.state('db'), { down: true });
    c.resetAll();
    const h = c.history();
    assert.deepEqual(
      h.map((e) => [e.ts, e.service, e.change.kind, e.description]),
      [
        [1000, 'api', 'latency', 'latency 200ms'],
        [1001, 'api', 'loss', 'latency 200ms, loss 50%'],
        [1002, 'api', 'reset', 'none'],
        [1003, 'db', 'down', 'down'],
        [1004, 'db', 'reset', 'none'],
      ],
    );
    assert.throws(() => c.apply('apu', { kind: 'down' }), scenarioError(/unknown service "apu" \(did you mean "api"\?\)/));
    c.unregister('api', a1);
    assert.deepEqual(c.proxies('api'), [a2]);
    await c.close();
  });
});
