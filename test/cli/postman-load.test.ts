import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { cli } from '../helpers/cli';

const COLLECTION = 'fixtures/postman/mock-app.postman_collection.json';

interface Summary {
  state: string;
  exitCode: number;
  metrics: Record<string, { type: string; values: Record<string, number> }>;
}

describe('topas load on a Postman collection (local backend, app found next to the collection)', () => {
  test('the whole collection is the iteration: latency and failures per request name, every test a check', async () => {
    const r = await cli(['load', COLLECTION, '--rate', '10/s', '--duration', '2s', '--backend', 'local', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const s = JSON.parse(r.stdout) as Summary;
    assert.equal(s.state, 'passed');
    const iterations = s.metrics.iterations.values.count;
    assert.ok(iterations > 0, 'no iteration ran');
    for (const name of ['health check', 'version', 'create user', 'get user', 'update user', 'list users', 'delete user', 'get deleted user']) {
      const d = s.metrics[`http_req_duration{name:${name}}`];
      assert.ok(d, `no latency for "${name}": ${Object.keys(s.metrics).join(', ')}`);
      assert.equal(d.values.count, iterations);
      assert.ok(d.values['p(95)'] > 0);
      // "get deleted user" answers 404 and its test expects it: not a failed request
      assert.equal(s.metrics[`http_req_failed{name:${name}}`].values.rate, 0, name);
    }
    // 14 Postman tests + 8 requests per iteration, all passing
    assert.equal(s.metrics.checks.values.passes, iterations * 22);
    assert.equal(s.metrics.checks.values.fails, 0);
  });

  test('--folder runs one folder; a failing Postman test shows as a failed check and a failed request', async () => {
    const r = await cli(['load', COLLECTION, '--folder', 'health', '--rate', '10/s', '--duration', '1s', '--backend', 'local', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const s = JSON.parse(r.stdout) as Summary;
    assert.deepEqual(
      Object.keys(s.metrics).filter((k) => k.startsWith('http_reqs{')).sort(),
      ['http_reqs{name:health check}', 'http_reqs{name:version}'],
    );

    const f = await cli(['load', 'fixtures/postman/failing.postman_collection.json', '--rate', '10/s', '--duration', '1s', '--backend', 'local', '--app', 'fixtures/postman/topas.yaml', '--threshold', 'checks:rate>0.99', '--json']);
    assert.equal(f.code, 4, f.stderr);
    const fs = JSON.parse(f.stdout) as Summary;
    assert.equal(fs.metrics['http_req_failed{name:version}'].values.rate, 1);
    assert.equal(fs.metrics['http_req_failed{name:health check}'].values.rate, 0);
  });

  test('--folder that does not exist is invalid input', async () => {
    const r = await cli(['load', COLLECTION, '--folder', 'nope', '--rate', '1/s', '--duration', '1s', '--backend', 'local']);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /--folder nope: no folder or request of that name in mock-app\.postman_collection\.json \(folders: health, users\)/);
  });
});
