import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Backend } from '../../src/backends/backend';
import { REPO_ROOT } from '../helpers/cli';
import { parseAppSpec } from '../../src/spec/load-app-spec';
import { TopasError } from '../../src/errors';
import { LocalBackend } from '../../src/backends/local/local-backend';
import { sutBehaviourSuite } from './sut-behaviour-suite';

// The behaviour suite against fixtures/plugins/process-backend, loaded as a plugin
// is: a copy of its folder whose `require('topas')` finds this repository's build.
const dir = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'topas-plugin-behaviour-')));
fs.cpSync(path.join(REPO_ROOT, 'fixtures', 'plugins', 'process-backend'), dir, { recursive: true });
fs.mkdirSync(path.join(dir, 'node_modules'));
fs.symlinkSync(REPO_ROOT, path.join(dir, 'node_modules', 'topas'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { ProcessBackend } = require(path.join(dir, 'lib', 'process-backend.js')) as { ProcessBackend: new () => Backend };

// local first: the plugin's errors are then compared with local's, word for word
sutBehaviourSuite('local', () => new LocalBackend());
sutBehaviourSuite('process', () => new ProcessBackend(), {
  lacks: { kept: 'its replicas are child processes of the topas that started them, with their output in its pipes (detach tears down and says so)' },
});

test("the plugin's validate(spec) stops a start before anything runs, every problem with its path", async () => {
  const file = path.join(dir, 'topas.yaml');
  const spec = parseAppSpec('name: no-commands\nservices:\n  - name: api\n    image: local/mock-app\n    port: 8080\n  - name: web\n    image: local/mock-app\n    port: 8080\n', file);
  const workDir = path.join(dir, 'never');
  const err = await new ProcessBackend().start(spec, { runId: `pv-${process.pid}`, workDir, log: () => {}, processEnv: process.env }).then(
    () => undefined,
    (e: unknown) => e,
  );
  assert.ok(err instanceof TopasError, String(err));
  assert.equal(err.code, 'BACKEND_UNAVAILABLE');
  assert.equal(err.message, 'backend process cannot run app no-commands: 2 problems in the app spec for it');
  assert.deepEqual(err.problems.map((p) => p.path), ['services[0].command', 'services[1].command']);
  assert.equal(fs.existsSync(workDir), false, 'nothing was started');
});
