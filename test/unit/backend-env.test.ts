import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { LocalBackend } from '../../src/backends/local/local-backend';
import { findPostgresBinaries } from '../../src/sea/postgres-binaries';
import { parseAppSpec } from '../../src/spec/load-app-spec';

test('the local backend reads TOPAS_PG_DIR from the env it is handed, not from process.env', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-backend-env-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const spec = parseAppSpec('services:\n  - name: api\n    command: ["node", "x.js"]\n    port: 8080\ndatabases:\n  - name: db\n', path.join(dir, 'topas.yaml'));
  const backend = new LocalBackend();
  // an empty folder holds no initdb and postgres: the probe says so
  const empty = await backend.probe(spec, { env: { TOPAS_PG_DIR: dir } });
  assert.equal(empty.ok, false, empty.reason);
  assert.match(empty.reason, /PostgreSQL/);

  let found = true;
  try {
    findPostgresBinaries({});
  } catch {
    found = false;
  }
  if (!found) return t.skip('no PostgreSQL binaries here without TOPAS_PG_DIR');
  // process.env naming the empty folder does not reach a probe handed an env without it
  const before = process.env.TOPAS_PG_DIR;
  process.env.TOPAS_PG_DIR = dir;
  try {
    const handed = await backend.probe(spec, { env: {} });
    assert.equal(handed.ok, true, handed.reason);
  } finally {
    if (before === undefined) delete process.env.TOPAS_PG_DIR;
    else process.env.TOPAS_PG_DIR = before;
  }
});
