import { test } from 'node:test';
import assert from 'node:assert/strict';
import { addEncoded, buildHistogram, decodeHistogram, encodeHistogram, finishAdds } from '../../src/load/hdr';
import { HDR_HIGHEST_US, HDR_LOWEST_US, HDR_SIGNIFICANT_DIGITS } from '../../src/load/metrics';

const make = () => buildHistogram(HDR_LOWEST_US, HDR_HIGHEST_US, HDR_SIGNIFICANT_DIGITS);

test('addEncoded gives the histogram decode-and-add gives: every percentile, min, max, count', () => {
  let seed = 99;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
  const parts = Array.from({ length: 7 }, (_, i) => {
    const h = make();
    // empty, tiny, long-tailed and huge values; repeats (runs) and long gaps (zero runs)
    const n = i === 0 ? 0 : 10 ** (i % 4) * 3;
    for (let k = 0; k < n; k++) h.recordValue(Math.max(1, Math.round(rnd() ** 6 * (i === 6 ? HDR_HIGHEST_US : 5_000_000))));
    if (i === 3) h.recordValueWithCount(42, 100_000);
    return encodeHistogram(h);
  });
  const slow = make();
  for (const p of parts) slow.add(decodeHistogram(p));
  const fast = make();
  for (const p of parts) addEncoded(fast, p);
  finishAdds(fast);
  assert.equal(fast.totalCount, slow.totalCount);
  assert.equal(fast.minNonZeroValue, slow.minNonZeroValue);
  assert.equal(fast.maxValue, slow.maxValue);
  for (const p of [0, 1, 10, 50, 90, 95, 99, 99.9, 99.99, 100]) assert.equal(fast.getValueAtPercentile(p), slow.getValueAtPercentile(p), `p${p}`);
  assert.equal(encodeHistogram(fast), encodeHistogram(slow));
});

test('a part of another layout is still added exactly (decoded the slow way)', () => {
  const other = buildHistogram(1, 60_000_000, 2);
  for (const v of [5, 500, 5000, 50_000]) other.recordValue(v);
  const into = make();
  into.recordValue(7);
  addEncoded(into, encodeHistogram(other));
  finishAdds(into);
  assert.equal(into.totalCount, 5);
  // the other layout keeps 2 digits: 50,000 is within its 1% bucket
  assert.ok(Math.abs(into.maxValue - 50_000) <= 500, String(into.maxValue));
  assert.throws(() => addEncoded(into, Buffer.from('not a histogram').toString('base64')), /V2 compressed/);
});
