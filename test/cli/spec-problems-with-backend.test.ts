import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { cli, REPO_ROOT } from '../helpers/cli';

const DIR = path.join(REPO_ROOT, 'fixtures', 'cli', 'spec-and-backend');
const SPEC = path.join(DIR, 'topas.yaml');

/** The problem lines of an error, `  path: message`, in order. */
function problemLines(stderr: string): string[] {
  return stderr.split('\n').filter((l) => /^\s+\S+: /.test(l)).map((l) => l.trim());
}

function assertOneErrorWithAll(r: { code: number; stderr: string }, what: string): void {
  assert.equal(r.code, 2, `${what}: invalid input\n${r.stderr}`);
  assert.equal(r.stderr.match(/error \[/g)?.length, 1, `${what}: one error\n${r.stderr}`);
  assert.match(r.stderr, /error \[INVALID_APP_SPEC\]: /, what);
  assert.match(r.stderr, /topas\.yaml: 4 problems in the app spec \(2 of them for backend local\)/, what);
  assert.deepEqual(
    problemLines(r.stderr).map((l) => l.slice(0, l.indexOf(':'))),
    // a missing field sorts at its entry, before the entry's fields
    ['services[0].command', 'services[0].replcias', 'services[1].port', 'services[2].command'],
    `${what}: the spec's own and the backend's problems, in file order\n${r.stderr}`,
  );
  assert.match(r.stderr, /services\[0\]\.replcias: unknown field; did you mean "replicas"\?/, what);
  assert.match(r.stderr, /services\[0\]\.command: service api has no command \(its image local\/mock-app runs on docker\)/, what);
  assert.match(r.stderr, /services\[1\]\.port: expected integer 1-65535, got "80a"/, what);
  assert.match(r.stderr, /services\[2\]\.command: service cache has no command/, what);
  assert.doesNotMatch(r.stderr, /never runs|is up on backend|tearing down/, `${what}: nothing ran`);
}

test('run --backend local: the spec\'s own problems and the backend\'s come in one error, each with its path', async () => {
  const r = await cli(['run', path.join(DIR, 'smoke.lua'), '--app', SPEC, '--backend', 'local']);
  assertOneErrorWithAll(r, 'run');
});

test('up and load --backend local: the same one error', async () => {
  assertOneErrorWithAll(await cli(['up', '--app', SPEC, '--backend', 'local']), 'up');
  assertOneErrorWithAll(await cli(['load', path.join(DIR, 'smoke.lua'), '--app', SPEC, '--backend', 'local', '--duration', '1s']), 'load');
});

test('--backend auto: only the spec\'s own problems (no one backend\'s rules apply before one is chosen)', async () => {
  const r = await cli(['run', path.join(DIR, 'smoke.lua'), '--app', SPEC, '--backend', 'auto']);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /topas\.yaml: 2 problems in the app spec\n/);
  assert.doesNotMatch(r.stderr, /has no command|for backend/);
});

test('kind: App form: the backend\'s paths are under spec, beside the spec\'s own', async () => {
  const r = await cli(['run', path.join(DIR, 'smoke.lua'), '--app', path.join(DIR, 'kind-app.yaml'), '--backend', 'local']);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /2 problems in the app spec \(1 of them for backend local\)/);
  assert.match(r.stderr, /spec\.services\[0\]\.tls: /);
  assert.match(r.stderr, /spec\.services\[0\]\.command: service api has no command/);
});
