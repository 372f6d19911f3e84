import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { cli } from '../helpers/cli';

test("the app spec's ${VAR}s come from the command's Io env, never from the process's", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-spec-env-'));
  const previous = process.env.TOPAS_SPEC_ENV_APP;
  try {
    fs.writeFileSync(path.join(dir, 'topas.yaml'), 'name: ${TOPAS_SPEC_ENV_APP}\nservices:\n  - name: api\n    command: ["node", "-e", "0"]\n    port: 8080\n');
    process.env.TOPAS_SPEC_ENV_APP = 'from-the-process';
    const env: NodeJS.ProcessEnv = { ...process.env, TOPAS_SPEC_ENV_APP: 'from-io' };
    const ps = await cli(['ps', '--json', '--app', 'topas.yaml'], { cwd: dir, env });
    assert.equal(ps.code, 0, ps.stderr);
    assert.equal(JSON.parse(ps.stdout).app, 'from-io');

    delete env.TOPAS_SPEC_ENV_APP;
    const unset = await cli(['ps', '--json', '--app', 'topas.yaml'], { cwd: dir, env });
    assert.equal(unset.code, 2, unset.stderr);
    assert.match(unset.stderr, /environment variable TOPAS_SPEC_ENV_APP is not set/);
  } finally {
    if (previous === undefined) delete process.env.TOPAS_SPEC_ENV_APP;
    else process.env.TOPAS_SPEC_ENV_APP = previous;
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
