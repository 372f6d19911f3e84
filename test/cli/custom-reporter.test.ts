import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { cli, REPO_ROOT } from '../helpers/cli';
import { startHttpServer } from '../helpers/http-server';
import { readHookEvents, writeLifecycleReporter } from '../helpers/lifecycle-reporter';

/** `--reporter ./path.js[:file]`: a custom reporter, a function or an object with render()/onRunEnd(), loaded from the user's folder. */
let dir: string;

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-custom-reporter-'));
  fs.copyFileSync(path.join(REPO_ROOT, 'fixtures', 'cli', 'no-app', 'pass.lua'), path.join(dir, 'pass.lua'));
  fs.writeFileSync(path.join(dir, 'count.js'), "module.exports = (report) => `scenarios: ${report.results.length}, state: ${report.state}`;\n");
  fs.writeFileSync(
    path.join(dir, 'hooks.js'),
    [
      "const fs = require('node:fs');",
      'module.exports = {',
      "  render: (report) => `run ${report.runId} ${report.state}`,",
      "  onRunEnd: (report) => fs.writeFileSync(__dirname + '/ended.txt', report.state),",
      '};',
      '',
    ].join('\n'),
  );
  fs.writeFileSync(path.join(dir, 'bad.js'), 'module.exports = 42;\n');
  writeLifecycleReporter(dir);
  fs.writeFileSync(path.join(dir, 'steps.lua'), ['step("one", function() end)', 'step("two", function()', '  expect(1):to_be(2)', 'end)', ''].join('\n'));
});

after(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('custom reporters from a path', () => {
  test('a function reporter to stdout, an object reporter to a file with its onRunEnd hook', async () => {
    const r = await cli(['run', 'pass.lua', '--reporter', './count.js', '--reporter', './hooks.js:out/hooks.txt'], { cwd: dir });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^scenarios: 1, state: passed$/m);
    assert.match(fs.readFileSync(path.join(dir, 'out', 'hooks.txt'), 'utf8'), /^run \S+ passed\n$/);
    assert.equal(fs.readFileSync(path.join(dir, 'ended.txt'), 'utf8'), 'passed');
  });

  test('lifecycle hooks: run start, each step and scenario end, run end; and each second of a load run', async () => {
    const r = await cli(['run', 'steps.lua', '--reporter', './lifecycle.js'], { cwd: dir });
    assert.equal(r.code, 1, r.stderr);
    const seen = readHookEvents(dir);
    assert.deepEqual(
      seen.map((e) => e.hook === 'runStart' ? [e.hook, e.v.kind] : [e.hook, e.v.name ?? e.v.state, e.v.state, e.v.location].filter((x) => x !== undefined)),
      [['runStart', 'run'], ['stepEnd', 'one', 'passed'], ['stepEnd', 'two', 'failed', 'steps.lua:3'], ['scenarioEnd', 'steps.lua', 'failed'], ['runEnd', 'failed', 'failed']],
    );
    const server = await startHttpServer((_req, res) => res.end('ok'));
    try {
      const l = await cli(['load', path.join(REPO_ROOT, 'fixtures', 'load', 'no-app', 'fixed.lua'), '--rate', '20/s', '--duration', '3s', '--reporter', './lifecycle.js'], { cwd: dir, env: { ...process.env, TARGET: `${server.url}/fixed` } });
      assert.equal(l.code, 0, l.stderr);
    } finally {
      await server.close();
    }
    const load = readHookEvents(dir);
    assert.deepEqual(load[0], { hook: 'runStart', v: { runId: load[0].v.runId, kind: 'load' } });
    const seconds = load.filter((e) => e.hook === 'loadSecond').map((e) => e.v);
    // one per second of the 3 s schedule, in order (a fourth when a response came in after the last second)
    assert.deepEqual(seconds.map((p) => p.t).slice(0, 3), [0, 1, 2], JSON.stringify(load));
    assert.ok(seconds.length <= 4 && seconds.every((p, i) => p.t === i), JSON.stringify(load));
    assert.equal(seconds.reduce((n, p) => n + Number(p.requests), 0), 60);
    assert.equal(load[load.length - 1].hook, 'runEnd');
  });

  test('a custom reporter sees secrets masked', async () => {
    fs.writeFileSync(path.join(dir, 'leak.lua'), 'error("token is " .. env("API_TOKEN"))\n');
    fs.writeFileSync(path.join(dir, 'dump.js'), "const fs = require('node:fs');\nmodule.exports = { onRunEnd: (r) => fs.writeFileSync(__dirname + '/dump.json', JSON.stringify(r)) };\n");
    const r = await cli(['run', 'leak.lua', '--env', 'API_TOKEN=s3cr3t-v4lue-123', '--reporter', './dump.js'], { cwd: dir });
    assert.equal(r.code, 1, r.stderr);
    const dump = fs.readFileSync(path.join(dir, 'dump.json'), 'utf8');
    assert.match(dump, /token is \*\*\*/);
    assert.doesNotMatch(dump, /s3cr3t-v4lue-123/);
    // so do the html and github reporters of a run without an app (whose own mask is empty)
    const h = await cli(['run', 'leak.lua', '--env', 'API_TOKEN=s3cr3t-v4lue-123', '--reporter', 'html:leak.html', '--reporter', 'github:gh.txt'], { cwd: dir });
    assert.equal(h.code, 1, h.stderr);
    for (const f of ['leak.html', 'gh.txt']) {
      const text = fs.readFileSync(path.join(dir, f), 'utf8');
      assert.match(text, /token is \*\*\*/, f);
      assert.doesNotMatch(text, /s3cr3t-v4lue-123/, f);
    }
  });

  test('a missing file or a module that is no reporter exits 2 before anything runs', async () => {
    const runs = () => fs.readdirSync(path.join(dir, '.topas', 'runs')).length;
    const before = runs();
    const missing = await cli(['run', 'pass.lua', '--reporter', './nope.js'], { cwd: dir });
    assert.equal(missing.code, 2, missing.stderr);
    assert.match(missing.stderr, /reporter \.\/nope\.js not found/);
    const bad = await cli(['run', 'pass.lua', '--reporter', './bad.js'], { cwd: dir });
    assert.equal(bad.code, 2, bad.stderr);
    assert.match(bad.stderr, /exports neither a function nor an object/);
    assert.equal(runs(), before, 'no run was started');
  });
});
