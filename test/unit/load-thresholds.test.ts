import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { TopasError } from '../../src/errors';
import { MetricsRegistry } from '../../src/load/metrics';
import {
  abortingThreshold,
  evaluateThresholds,
  parseMetricKey,
  parseThresholdExpr,
  parseThresholdFlags,
  parseThresholdsOption,
  thresholdsPassed,
} from '../../src/load/thresholds';

function problemsOf(fn: () => unknown): Array<{ path: string; message: string }> {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof TopasError, String(e));
    assert.equal(e.code, 'INVALID_FLAGS');
    assert.equal(e.exitCode, 2);
    return e.problems;
  }
  assert.fail('expected an error');
}

describe('threshold parsing', () => {
  test('valid expressions', () => {
    assert.deepEqual(parseThresholdExpr('p(95)<250'), { aggregation: 'p(95)', percentile: 95, op: '<', value: 250, source: 'p(95)<250' });
    assert.equal(parseThresholdExpr('p(99.9) <= 800').aggregation, 'p(99.9)');
    assert.equal(parseThresholdExpr(' avg < 200 ').op, '<');
    assert.equal(parseThresholdExpr('rate<0.01').value, 0.01);
    assert.equal(parseThresholdExpr('count>100').aggregation, 'count');
    assert.equal(parseThresholdExpr('med>=1e2').value, 100);
    assert.equal(parseThresholdExpr('max===5').op, '==');
  });

  test('invalid expressions suggest the likely fix', () => {
    const msg = (s: string) => {
      try {
        parseThresholdExpr(s);
      } catch (e) {
        return (e as Error).message;
      }
      return 'parsed';
    };
    assert.equal(msg('p95<250'), 'cannot parse "p95<250"; did you mean "p(95)<250"?');
    assert.match(msg('average<200'), /did you mean "avg<200"/);
    assert.match(msg('avg=<200'), /did you mean "avg<=200"/);
    assert.match(msg('p(95)<250ms'), /did you mean "p\(95\)<250"/);
    assert.match(msg('rate<1%'), /did you mean "rate<0.01"/);
    assert.match(msg('avgg>100'), /did you mean "avg>100"/);
    assert.match(msg('P(95) < 250'), /did you mean "p\(95\)<250"/);
    assert.match(msg('whatever'), /expected e\.g\./);
    assert.match(msg('p(101)<5'), /between 0 and 100/);
  });

  test('options.thresholds: strings and tables, all problems reported with paths', () => {
    const defs = parseThresholdsOption({
      http_req_duration: ['p(95)<250', { threshold: 'p(99)<800', abort_on_fail: true, delay_abort_eval: '10s' }],
      'http_req_duration{name:/api/users/:name}': { 1: 'avg<100' },
      iterations: ['rate>190'],
    });
    assert.equal(defs.length, 4);
    assert.deepEqual(defs[1].abortOnFail, true);
    assert.equal(defs[1].delayAbortEvalMs, 10_000);
    assert.deepEqual(defs[2].tags, { name: '/api/users/:name' });
    assert.equal(defs[2].metric, 'http_req_duration');

    const problems = problemsOf(() =>
      parseThresholdsOption({
        http_req_duration: ['p(95)<250', 'p95<250'],
        http_reqs: ['p(95)<1'],
        http_req_failed: [{ threshold: 'rate<0.01', abort_on_fial: true }],
        checks: [{ abort_on_fail: 'yes' }],
        'http_req_duration{name}': ['avg<1'],
        http_req_duratoin: ['avg<1'],
      }),
    );
    assert.deepEqual(
      problems.map((p) => `${p.path}: ${p.message}`),
      [
        'options.thresholds["http_req_duration"][2]: cannot parse "p95<250"; did you mean "p(95)<250"?',
        'options.thresholds["http_reqs"][1]: "p(95)" does not apply to counter metric "http_reqs" (use count, rate)',
        'options.thresholds["http_req_failed"][1].abort_on_fial: unknown field; did you mean "abort_on_fail"?',
        'options.thresholds["checks"][1].abort_on_fail: expected true or false',
        'options.thresholds["checks"][1].threshold: missing; expected e.g. threshold="p(95)<250"',
        'options.thresholds["http_req_duration{name}"]: "http_req_duration{name}": tag filter "name" is not tag:value',
        'options.thresholds["http_req_duratoin"]: unknown metric "http_req_duratoin"; did you mean "http_req_duration"?',
      ],
    );
  });

  test('--threshold flags split the metric key at the first colon outside braces', () => {
    const defs = parseThresholdFlags(['http_req_duration{name:/api/users/:name}:p(95)<250', 'http_req_failed:rate<0.01']);
    assert.equal(defs[0].key, 'http_req_duration{name:/api/users/:name}');
    assert.deepEqual(defs[0].tags, { name: '/api/users/:name' });
    assert.equal(defs[0].expr.source, 'p(95)<250');
    const problems = problemsOf(() => parseThresholdFlags(['p(95)<250', 'http_req_duration:p95<250']));
    assert.equal(problems.length, 2);
    assert.match(problems[0].path, /^--threshold\[1\]/);
    assert.match(problems[1].message, /did you mean "p\(95\)<250"/);
  });

  test('metric keys with several tags', () => {
    assert.deepEqual(parseMetricKey('http_reqs{method:GET,status:200}'), { metric: 'http_reqs', tags: { method: 'GET', status: '200' } });
  });
});

describe('threshold evaluation', () => {
  function run() {
    let t = 0;
    const r = new MetricsRegistry({ now: () => t, startMs: 0 });
    for (let i = 1; i <= 100; i++) r.recordRequest({ name: '/fast', method: 'GET', status: 200, durationMs: i, failed: false });
    for (let i = 1; i <= 100; i++) r.recordRequest({ name: '/slow', method: 'GET', status: i <= 5 ? 500 : 200, durationMs: 1000 + i, failed: i <= 5 });
    for (let i = 0; i < 1000; i++) r.recordIteration(10);
    r.define('orders', 'counter');
    t = 5000;
    return r.snapshot();
  }

  test('per metric type: counter rate per second, rate metric a fraction, trend in ms', () => {
    const defs = parseThresholdsOption({
      iterations: ['rate>190', 'count>=1000'],
      http_req_failed: ['rate<0.01', 'rate<0.05'],
      http_req_duration: ['p(51)<200', 'p(50)<200', 'max<1100', 'min>0'],
      'http_req_duration{name:/fast}': ['p(95)<250', 'avg==50.5'],
      orders: ['count>0'],
      latency_custom: ['p(95)<1'],
    });
    const res = evaluateThresholds(defs, run());
    const by = (expr: string, key?: string) => res.find((r) => r.expression === expr && (!key || r.key === key))!;
    assert.equal(by('rate>190').observed, 200);
    assert.equal(by('rate>190').ok, true);
    assert.equal(by('count>=1000').ok, true);
    assert.equal(by('rate<0.01').observed, 0.025);
    assert.equal(by('rate<0.01').ok, false);
    assert.equal(by('rate<0.05').ok, true);
    assert.equal(by('p(51)<200').ok, false, 'half the requests are slow');
    assert.equal(by('p(50)<200').ok, true);
    assert.equal(by('max<1100').ok, false);
    assert.equal(by('max<1100').observed, 1100);
    assert.equal(by('min>0').ok, true);
    assert.equal(by('p(95)<250').ok, true);
    assert.ok(Math.abs(by('p(95)<250').observed! - 95) < 0.2);
    assert.equal(by('avg==50.5').ok, true);
    assert.equal(by('count>0').ok, false, 'a defined counter without samples counts 0');
    assert.equal(by('count>0').observed, 0);
    assert.equal(by('p(95)<1').ok, false);
    assert.match(by('p(95)<1').note!, /no samples/);
    assert.equal(thresholdsPassed(res), false);
    assert.equal(thresholdsPassed(res.filter((r) => r.ok)), true);
  });

  test('abort_on_fail only after delay_abort_eval', () => {
    const defs = parseThresholdsOption({
      http_req_failed: [{ threshold: 'rate<0.01', abort_on_fail: true, delay_abort_eval: '10s' }],
      http_req_duration: ['p(95)<1'],
    });
    const snap = run();
    assert.equal(abortingThreshold(defs, snap, 9_999), undefined);
    const hit = abortingThreshold(defs, snap, 10_000);
    assert.equal(hit?.expression, 'rate<0.01');
  });
});
