import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { TopasError } from '../../src/errors';
import { applyShapeChange, compilePathPattern, describeShape, isUnshaped, parseBandwidth, requestPath } from '../../src/shape/shape-state';

describe('parseBandwidth', () => {
  test('bit units are divided by 8, byte units are not', () => {
    assert.equal(parseBandwidth('1mbit'), 125_000);
    assert.equal(parseBandwidth('500kbit'), 62_500);
    assert.equal(parseBandwidth('8bit'), 1);
    assert.equal(parseBandwidth('1gbit'), 125_000_000);
    assert.equal(parseBandwidth('2mbps'), 2_000_000);
    assert.equal(parseBandwidth('64kb'), 64_000);
    assert.equal(parseBandwidth('1.5MBIT/s'), 187_500);
    assert.equal(parseBandwidth(4096), 4096);
    assert.equal(parseBandwidth('100'), 100);
  });
  test('rejects unknown units, zero and garbage', () => {
    for (const bad of ['1 furlong', 'mbit', '', '0kbit', '-1mbit', '1mbit2', '2bit']) {
      assert.throws(() => parseBandwidth(bad), (e: unknown) => e instanceof TopasError && e.code === 'INVALID_FLAGS', bad);
    }
    assert.throws(() => parseBandwidth(0), TopasError);
    assert.throws(() => parseBandwidth(Number.NaN), TopasError);
  });
});

describe('compilePathPattern', () => {
  test('globs match the whole path, * within a segment, ** across', () => {
    const one = compilePathPattern('/api/*');
    assert.equal(one.kind, 'glob');
    assert.ok(one.test('/api/users'));
    assert.ok(!one.test('/api/users/1'));
    assert.ok(!one.test('/other/api/x'));
    const deep = compilePathPattern('/api/**');
    assert.ok(deep.test('/api/users/1'));
    const exact = compilePathPattern('/health');
    assert.ok(exact.test('/health'));
    assert.ok(!exact.test('/healthz'));
    assert.ok(compilePathPattern('/v?/x').test('/v1/x'));
    assert.ok(compilePathPattern('/file.json').test('/file.json'));
    assert.ok(!compilePathPattern('/file.json').test('/fileXjson'));
  });
  test('Lua patterns: unanchored unless ^/$, %-classes, lazy -', () => {
    const p = compilePathPattern('^/users/%w+$');
    assert.equal(p.kind, 'lua');
    assert.ok(p.test('/users/alice'));
    assert.ok(!p.test('/users/alice/x'));
    assert.ok(!p.test('/users/'));
    const unanchored = compilePathPattern('/orders/%d');
    assert.ok(unanchored.test('/api/orders/42'));
    assert.ok(!unanchored.test('/api/orders/x'));
    assert.ok(compilePathPattern('^/a.-b$').test('/axxb'));
    assert.ok(compilePathPattern('^/[%a_]+$').test('/ab_c'));
    assert.ok(!compilePathPattern('^/[%a_]+$').test('/ab-c'));
    assert.ok(compilePathPattern('^/x%.json').test('/x.json'));
    assert.ok(!compilePathPattern('^/x%.json').test('/xajson'));
  });
  test('bad Lua patterns are reported', () => {
    assert.throws(() => compilePathPattern('^/a%'), /ends with "%"/);
    assert.throws(() => compilePathPattern('^/%b()'), /not supported/);
    assert.throws(() => compilePathPattern('^/[abc'), /missing "]"/);
    assert.throws(() => compilePathPattern(''), TopasError);
  });
});

test('requestPath strips query and absolute-form prefix', () => {
  assert.equal(requestPath('/a/b?x=1'), '/a/b');
  assert.equal(requestPath('http://h:1/a#f'), '/a');
  assert.equal(requestPath('http://h:1'), '/');
  assert.equal(requestPath('*'), '*');
});

test('applyShapeChange merges per kind, zero clears, reset clears all', () => {
  let s = applyShapeChange({}, { kind: 'latency', delayMs: 200, jitterMs: 10 });
  s = applyShapeChange(s, { kind: 'loss', probability: 0.05 });
  s = applyShapeChange(s, { kind: 'latency', delayMs: 50, jitterMs: 0 });
  assert.deepEqual(s, { latency: { delayMs: 50, jitterMs: 0 }, loss: { probability: 0.05 } });
  assert.equal(describeShape(s), 'latency 50ms, loss 5%');
  const before = s;
  s = applyShapeChange(s, { kind: 'loss', probability: 0 });
  assert.deepEqual(s, { latency: { delayMs: 50, jitterMs: 0 } });
  assert.deepEqual(before.loss, { probability: 0.05 }, 'input not mutated');
  s = applyShapeChange(s, { kind: 'http_fault', status: 503, rate: 0.2, path: '/a/*' });
  s = applyShapeChange(s, { kind: 'down' });
  assert.match(describeShape(s), /down, latency 50ms, http_fault 503 at 20% on \/a\/\*/);
  s = applyShapeChange(s, { kind: 'reset' });
  assert.ok(isUnshaped(s));
  assert.equal(describeShape(s), 'none');
  assert.equal(describeShape({ bandwidth: { bytesPerSecond: 125_000 } }), 'bandwidth 1mbit');
});
