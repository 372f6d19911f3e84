import { test } from 'node:test';
import assert from 'node:assert/strict';
import { describeLostShare, describeShare } from '../../src/load/lost-share';

test("a lost worker's share: 1/N of an arrival rate (ramps too), or its VUs; and from when it is missing", () => {
  const rate = { executor: 'constant-arrival-rate', rate: 3000, timeUnitMs: 1000, durationMs: 10_000, preAllocatedVus: 1, maxVus: 1 } as const;
  assert.equal(describeShare({ worker: 1, workers: 3 }, rate), '1/3 of the rate (iterations k with k % 3 = 1, ~1000/s)');
  const ramp = { executor: 'ramping-arrival-rate' as const, startRate: 0, timeUnitMs: 1000, stages: [{ target: 100, durationMs: 5000 }], preAllocatedVus: 1, maxVus: 1 };
  assert.equal(describeShare({ worker: 0, workers: 4 }, ramp), '1/4 of the rate (iterations k with k % 4 = 0)');
  // 10 VUs over 3 workers: 4, 3, 3
  const vus = { executor: 'constant-vus', vus: 10, durationMs: 1000 } as const;
  assert.equal(describeShare({ worker: 0, workers: 3 }, vus), '4 of 10 VUs');
  assert.equal(describeShare({ worker: 2, workers: 3 }, vus), '3 of 10 VUs');
  const line = describeLostShare({ worker: 1, workers: 3, label: 'process 42', atMs: 5100, keptUntilMs: 5020, reason: 'exited unexpectedly (killed by SIGKILL)' }, rate);
  assert.match(line, /^load worker 1 of 3 \(process 42\) died 5\.10s into the load \(exited unexpectedly \(killed by SIGKILL\)\); its metrics up to 5\.02s are kept, its share, 1\/3 of the rate .*, is missing from 5\.02s to the end$/);
  assert.match(describeLostShare({ worker: 0, workers: 2, label: 'thread 1', atMs: 300, reason: 'x' }, rate), /it had reported no metrics yet, .* is missing from 0ms to the end/);
});
