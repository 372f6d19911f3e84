import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { cli, REPO_ROOT } from '../helpers/cli';

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

  test('a missing file or a module that is no reporter exits 2 before anything runs', async () => {
    const missing = await cli(['run', 'pass.lua', '--reporter', './nope.js'], { cwd: dir });
    assert.equal(missing.code, 2, missing.stderr);
    assert.match(missing.stderr, /reporter \.\/nope\.js not found/);
    const bad = await cli(['run', 'pass.lua', '--reporter', './bad.js'], { cwd: dir });
    assert.equal(bad.code, 2, bad.stderr);
    assert.match(bad.stderr, /exports neither a function nor an object/);
    assert.equal(fs.existsSync(path.join(dir, '.topas', 'runs')) && fs.readdirSync(path.join(dir, '.topas', 'runs')).length, 1, 'only the first test ran');
  });
});
