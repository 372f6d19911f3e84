import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { cli } from '../helpers/cli';

test('--backend local: every service it cannot run is named with its path, before anything starts', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-validate-'));
  try {
    const spec = [
      'name: validate-cli',
      'services:',
      '  - name: api',
      '    image: local/mock-app',
      '    port: 8080',
      '  - name: worker',
      '    command: ["node", "-e", "setInterval(() => {}, 1000)"]',
      '    port: 8081',
      '  - name: cache',
      '    image: local/cache',
      '    port: 6379',
      '',
    ].join('\n');
    fs.writeFileSync(path.join(dir, 'topas.yaml'), spec);
    fs.writeFileSync(path.join(dir, 'smoke.lua'), 'test("x", function() end)\n');
    const r = await cli(['run', path.join(dir, 'smoke.lua'), '--app', path.join(dir, 'topas.yaml'), '--backend', 'local']);
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /backend local cannot run app validate-cli: 2 problems in the app spec for it/);
    assert.match(r.stderr, /services\[0\]\.command: service api has no command \(its image local\/mock-app runs on docker\)/);
    assert.match(r.stderr, /services\[2\]\.command: service cache has no command \(its image local\/cache runs on docker\)/);
    assert.doesNotMatch(r.stderr, /services\[1\]/, 'a service with a command is runnable');
    assert.doesNotMatch(r.stderr, /is up on backend|tearing down/, 'nothing started');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
