import { test } from 'node:test';
import assert from 'node:assert/strict';
import { markDependentsBypass, ShapeController, type ShapeHistoryEntry } from '../../src/shape/shape-controller';

test('a shape on a service whose dependents bypass the proxies says it reaches scenario traffic only', () => {
  const c = new ShapeController({ services: ['api', 'db', 'worker'], now: () => 1 });
  markDependentsBypass(c, {
    services: [
      { name: 'api', dependsOn: ['db'] },
      { name: 'worker', dependsOn: ['db', 'api'] },
    ],
  });
  const seen: ShapeHistoryEntry[] = [];
  c.onChange((e) => seen.push(e));
  c.apply('db', { kind: 'down' });
  c.apply('db', { kind: 'reset' });
  c.apply('worker', { kind: 'latency', delayMs: 100, jitterMs: 0 });
  assert.match(seen[0].note ?? '', /^scenario traffic only: api, worker reach db directly/);
  // taking a shape away needs no warning; nothing depends on worker
  assert.equal(seen[1].note, undefined);
  assert.equal(seen[2].note, undefined);
  assert.equal(seen[0].description, 'down');
});

test('without bypassing dependents, shapes carry no note', () => {
  const c = new ShapeController({ services: ['db'] });
  assert.equal(c.history().length, 0);
  c.apply('db', { kind: 'loss', probability: 0.5 });
  assert.equal(c.history()[0].note, undefined);
});
