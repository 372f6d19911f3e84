import { after } from 'node:test';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Backend } from '../../src/backends/backend';
import { REPO_ROOT } from '../helpers/cli';
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

sutBehaviourSuite('process', () => new ProcessBackend(), {
  lacks: { kept: 'its replicas are child processes of the topas that started them, with their output in its pipes (detach tears down and says so)' },
});
