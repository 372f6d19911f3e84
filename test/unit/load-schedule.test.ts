import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { TopasError } from '../../src/errors';
import { ArrivalDispatcher, ArrivalSchedule, splitCount } from '../../src/load/schedule';
import { DEFAULT_MAX_VUS_PER_CORE, parseRate, resolveLoadPlan } from '../../src/load/load-plan';

function countBefore(s: ArrivalSchedule, tMs: number): number {
  let n = 0;
  for (let k = 0; k < s.totalIterations; k++) {
    if (s.startMs(k)! < tMs) n++;
    else break;
  }
  return n;
}

describe('arrival schedules', () => {
  test('constant rate: exact start times, count in [0,T) equals the integral', () => {
    const s = new ArrivalSchedule({ executor: 'constant-arrival-rate', rate: 200, timeUnitMs: 1000, durationMs: 30_000, preAllocatedVus: 1, maxVus: 1 });
    assert.equal(s.totalIterations, 6000);
    assert.equal(s.startMs(0), 0);
    assert.equal(s.startMs(1), 5);
    assert.equal(s.startMs(5999), 29_995);
    assert.equal(s.startMs(6000), undefined);
    for (const t of [1, 5, 6, 999, 1000, 1001, 12_345, 29_999, 30_000]) assert.equal(countBefore(s, t), Math.ceil(s.integral(t)), `T=${t}`);
    const perMinute = new ArrivalSchedule({ executor: 'constant-arrival-rate', rate: 1000, timeUnitMs: 60_000, durationMs: 60_000, preAllocatedVus: 1, maxVus: 1 });
    assert.equal(perMinute.totalIterations, 1000);
    assert.equal(perMinute.startMs(3), 180);
  });

  test('ramping rate: start times invert the integral of the linear stages', () => {
    const s = new ArrivalSchedule({
      executor: 'ramping-arrival-rate',
      startRate: 0,
      timeUnitMs: 1000,
      stages: [
        { target: 100, durationMs: 10_000 },
        { target: 100, durationMs: 5_000 },
        { target: 0, durationMs: 0 },
        { target: 20, durationMs: 4_000 },
        { target: 20, durationMs: 1_000 },
      ],
      preAllocatedVus: 1,
      maxVus: 1,
    });
    // 0->100 over 10s: 500; 5s at 100: 500; 0->20 over 4s: 40; 1s at 20: 20
    assert.equal(s.totalIterations, 1060);
    assert.equal(s.integral(10_000), 500);
    assert.ok(Math.abs(s.rateAt(5_000) - 50) < 1e-9);
    // the zero-length stage drops the rate to 0 at once; the next stage ramps 0 -> 20
    assert.ok(Math.abs(s.rateAt(15_500) - 2.5) < 1e-9);
    for (const t of [1, 333, 4_471, 10_000, 10_001, 14_999.5, 15_000, 16_000, 17_777, 19_500, 20_000]) {
      assert.equal(countBefore(s, t), Math.ceil(s.integral(t) - 1e-9), `T=${t}`);
    }
    // start times are increasing and each lands where the integral equals its index
    let prev = -1;
    for (let k = 0; k < s.totalIterations; k++) {
      const t = s.startMs(k)!;
      assert.ok(t > prev || k === 0, `k=${k}`);
      assert.ok(Math.abs(s.integral(t) - k) < 1e-6, `k=${k} t=${t} integral=${s.integral(t)}`);
      prev = t;
    }
  });

  test('split across workers: each iteration exactly once, k % W == w', () => {
    const s = new ArrivalSchedule({
      executor: 'ramping-arrival-rate',
      startRate: 10,
      timeUnitMs: 1000,
      stages: [{ target: 333, durationMs: 7_000 }],
      preAllocatedVus: 1,
      maxVus: 1,
    });
    for (const W of [1, 3, 7]) {
      const seen = new Set<number>();
      for (let w = 0; w < W; w++) {
        // in two windows, to check the resume point too
        const part = [...s.startsForWorker(w, W, 0, 3_210), ...s.startsForWorker(w, W, 3_210, s.durationMs)];
        for (const [k, t] of part) {
          assert.equal(k % W, w);
          assert.equal(t, s.startMs(k));
          assert.ok(!seen.has(k));
          seen.add(k);
        }
        assert.equal(part.length, splitCount(s.totalIterations, W, w));
      }
      assert.equal(seen.size, s.totalIterations);
    }
  });
});

describe('VU pool and dropped iterations', () => {
  test('iterations due while every VU is busy and the pool is at max are dropped', () => {
    let now = 0;
    // 10/s for 1s: due at 0,100,...,900; worker 0 of 1
    const s = new ArrivalSchedule({ executor: 'constant-arrival-rate', rate: 10, timeUnitMs: 1000, durationMs: 1000, preAllocatedVus: 1, maxVus: 2 });
    const d = new ArrivalDispatcher(s, { worker: 0, workers: 1, preAllocatedVus: 1, maxVus: 2, now: () => now });
    let r = d.poll();
    assert.deepEqual(r, { start: [{ k: 0, dueMs: 0, vu: 0, fresh: false }], dropped: [] });
    now = 100;
    r = d.poll();
    assert.deepEqual(r.start, [{ k: 1, dueMs: 100, vu: 1, fresh: true }], 'the pool grows to max_vus');
    now = 200;
    assert.deepEqual(d.poll().dropped, [2]);
    // a late poll: vu 0 was released at 250, so iteration 3 (due 300) gets it, iteration 2 stays dropped
    now = 250;
    d.release(0);
    now = 420;
    r = d.poll();
    assert.deepEqual(r.start.map((x) => [x.k, x.vu]), [[3, 0]]);
    assert.deepEqual(r.dropped, [4]);
    d.release(1);
    now = 450;
    d.release(0);
    // release after the due time of 5 (500)? no: 450 < 500, both free
    now = 1000;
    r = d.poll();
    assert.deepEqual(r.start.map((x) => x.k), [5, 6, 7, 8, 9].slice(0, 2));
    assert.deepEqual(r.dropped, [7, 8, 9]);
    assert.equal(d.started + d.droppedCount, s.totalIterations, 'every iteration is started or dropped');
    assert.equal(d.droppedCount, 5);
    assert.equal(d.done, true);
    assert.equal(d.nextDueMs(), undefined);
  });

  test('a poll may add at most maxFresh VUs; past it an iteration with no free VU is dropped', () => {
    const s = new ArrivalSchedule({ executor: 'constant-arrival-rate', rate: 10, timeUnitMs: 1000, durationMs: 1000, preAllocatedVus: 0, maxVus: 10 });
    const d = new ArrivalDispatcher(s, { worker: 0, workers: 1, preAllocatedVus: 0, maxVus: 10, now: () => 350 });
    const r = d.poll(2);
    assert.deepEqual(r.start.map((x) => [x.k, x.fresh]), [[0, true], [1, true]]);
    assert.deepEqual(r.dropped, [2, 3]);
  });

  test('a big pool hands out its free VUs oldest first', () => {
    let now = 0;
    const s = new ArrivalSchedule({ executor: 'constant-arrival-rate', rate: 100_000, timeUnitMs: 1000, durationMs: 1000, preAllocatedVus: 5000, maxVus: 5000 });
    const d = new ArrivalDispatcher(s, { worker: 0, workers: 1, preAllocatedVus: 5000, maxVus: 5000, now: () => now });
    now = 29.99; // 3,000 due, on VUs 0..2999
    const a = d.poll(0);
    assert.deepEqual([a.start.length, a.start[0].vu, a.start[2999].vu], [3000, 0, 2999]);
    for (const x of a.start) d.release(x.vu);
    now = 59.99; // VUs 3000..4999 first (free since the start), then those released at 30
    const b = d.poll(0);
    assert.deepEqual([b.start.length, b.start[0].vu, b.start[1999].vu, b.start[2000].vu, b.dropped.length], [3000, 3000, 4999, 0, 0]);
  });

  test('a VU released after an iteration was due does not rescue it', () => {
    let now = 0;
    const s = new ArrivalSchedule({ executor: 'constant-arrival-rate', rate: 2, timeUnitMs: 1000, durationMs: 1000, preAllocatedVus: 1, maxVus: 1 });
    const d = new ArrivalDispatcher(s, { worker: 0, workers: 1, preAllocatedVus: 1, maxVus: 1, now: () => now });
    assert.equal(d.poll().start.length, 1);
    now = 600;
    d.release(0); // freed at 600, iteration 1 was due at 500
    const r = d.poll();
    assert.deepEqual(r.dropped, [1]);
    assert.equal(r.start.length, 0);
  });
});

describe('options + flags', () => {
  test('parseRate', () => {
    assert.deepEqual(parseRate('200/s'), { rate: 200, timeUnitMs: 1000 });
    assert.deepEqual(parseRate('1000/m'), { rate: 1000, timeUnitMs: 60_000 });
    assert.deepEqual(parseRate('5/100ms'), { rate: 5, timeUnitMs: 100 });
    assert.deepEqual(parseRate(50), { rate: 50, timeUnitMs: 1000 });
    assert.throws(() => parseRate('fast'), /like "200\/s"/);
    assert.throws(() => parseRate('0/s'), /above 0/);
  });

  test('script options with a ramp', () => {
    const plan = resolveLoadPlan({ rate: 200, duration: '30s', ramp: '5s', max_vus: 500, thresholds: { http_req_duration: ['p(95)<250', 'p(99)<800'] } });
    assert.deepEqual(plan.executor, {
      executor: 'ramping-arrival-rate',
      startRate: 0,
      timeUnitMs: 1000,
      stages: [
        { target: 200, durationMs: 5000 },
        { target: 200, durationMs: 25_000 },
      ],
      preAllocatedVus: 20,
      maxVus: 500,
    });
    assert.equal(plan.durationMs, 30_000);
    assert.equal(plan.thresholds.length, 2);
  });

  test('flags override the script; --threshold replaces the thresholds of its metric key', () => {
    const plan = resolveLoadPlan(
      { rate: 200, duration: '30s', ramp: '5s', max_vus: 500, thresholds: { http_req_duration: ['p(95)<250'], http_req_failed: ['rate<0.01'] } },
      { rate: '1000/m', duration: '10s', maxVus: 7, threshold: ['http_req_duration:p(99)<900'] },
    );
    assert.equal(plan.executor.executor, 'ramping-arrival-rate');
    if (plan.executor.executor !== 'ramping-arrival-rate') return;
    assert.equal(plan.executor.timeUnitMs, 60_000);
    assert.deepEqual(plan.executor.stages, [
      { target: 1000, durationMs: 5000 },
      { target: 1000, durationMs: 5000 },
    ]);
    assert.equal(plan.executor.maxVus, 7);
    assert.deepEqual(
      plan.thresholds.map((t) => `${t.key}:${t.expr.source}`),
      ['http_req_failed:rate<0.01', 'http_req_duration:p(99)<900'],
    );
    const plain = resolveLoadPlan({}, { rate: '50/s', duration: '2s' });
    assert.deepEqual(plain.executor, { executor: 'constant-arrival-rate', rate: 50, timeUnitMs: 1000, durationMs: 2000, preAllocatedVus: 5, maxVus: 50 });
  });

  test('the default max VUs of a huge rate is scaled by the machine; an explicit one goes up to the limit', () => {
    const huge = resolveLoadPlan({}, { rate: '1000000/s', duration: '1s' }, {}, 2);
    assert.equal(huge.executor.executor, 'constant-arrival-rate');
    if (huge.executor.executor !== 'constant-arrival-rate') return;
    assert.equal(huge.executor.maxVus, 2 * DEFAULT_MAX_VUS_PER_CORE);
    assert.equal(huge.executor.preAllocatedVus, 2 * DEFAULT_MAX_VUS_PER_CORE);
    const told = resolveLoadPlan({ max_vus: 100000 }, { rate: '1000000/s', duration: '1s' }, {}, 2);
    assert.equal(told.executor.executor === 'constant-arrival-rate' && told.executor.maxVus, 100000);
  });

  test('stages and constant-vus from the script (Lua lists as numbered tables)', () => {
    const st = resolveLoadPlan({ stages: { 1: { target: 10, duration: '5s' }, 2: { target: 0, duration: '5s' } }, max_vus: 3, pre_allocated_vus: 2 });
    assert.equal(st.executor.executor, 'ramping-arrival-rate');
    assert.equal(st.durationMs, 10_000);
    const cv = resolveLoadPlan({ executor: 'constant-vus', vus: 4, duration: '1m' });
    assert.deepEqual(cv.executor, { executor: 'constant-vus', vus: 4, durationMs: 60_000 });
  });

  test('every problem at once, with paths', () => {
    let err: unknown;
    try {
      resolveLoadPlan(
        {
          rate: -3,
          duraton: '30s',
          max_vus: 2.5,
          executor: 'constant-arival-rate',
          stages: [{ target: 'x', duration: '5s' }, { target: 5 }],
          thresholds: { http_req_duration: ['p95<250'] },
        },
        { ramp: 'soon', threshold: ['nocolon'] },
      );
    } catch (e) {
      err = e;
    }
    assert.ok(err instanceof TopasError);
    assert.equal(err.code, 'INVALID_FLAGS');
    const lines = err.problems.map((p) => `${p.path}: ${p.message}`);
    for (const expected of [
      'options.duraton: unknown option; did you mean "duration"?',
      'options.rate: expected a rate above 0, got -3',
      '--ramp: expected a duration like "30s" or "2m", got "soon"',
      'options.max_vus: expected a whole number 1-100,000, got 2.5',
      'options.stages[1].target: expected a rate >= 0, got "x"',
      'options.stages[2].duration: missing',
      'options.executor: unknown executor "constant-arival-rate"; did you mean "constant-arrival-rate"?',
      'options.thresholds["http_req_duration"][1]: cannot parse "p95<250"; did you mean "p(95)<250"?',
    ]) {
      assert.ok(lines.includes(expected), `missing: ${expected}\nin:\n${lines.join('\n')}`);
    }
    assert.ok(lines.some((l) => l.startsWith('--threshold[1]')));
    assert.match(err.format(), /invalid load options \(\d+ problems\)/);
  });

  test('a ramp longer than the duration and a missing rate are invalid', () => {
    assert.throws(() => resolveLoadPlan({ rate: 10, duration: '5s', ramp: '10s' }), (e: TopasError) => /longer than the duration/.test(e.problems[0].message));
    assert.throws(() => resolveLoadPlan({ duration: '5s' }), (e: TopasError) => e.problems[0].path === 'options.rate');
  });
});
