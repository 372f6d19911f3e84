import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Client } from 'pg';
import { parseAppSpec } from '../../src/spec/load-app-spec';
import type { Sut } from '../../src/backends/backend';
import { DockerBackend } from '../../src/backends/docker/docker-backend';

// A database's first start makes an initialised copy of its image (postgres-template.ts); later runs start from it.
const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');
process.env.TESTCONTAINERS_RYUK_DISABLED = 'true';

function docker(...args: string[]): string {
  return execFileSync('docker', args, { encoding: 'utf8' }).trim();
}

function containers(label: string): string[] {
  return docker('ps', '-aq', '--filter', `label=${label}`).split('\n').filter(Boolean);
}

async function users(sut: Sut): Promise<string[]> {
  const c = new Client({ connectionString: sut.endpoint('db') });
  await c.connect();
  try {
    return (await c.query<{ name: string }>('SELECT name FROM users ORDER BY id')).rows.map((r) => r.name);
  } finally {
    await c.end();
  }
}

describe('docker databases start from an initialised copy of their image', () => {
  const backend = new DockerBackend();
  // credentials of this test only: its template is its own, whatever other runs on the machine made
  const password = `tpl-${process.pid}-${Date.now()}`;
  let workDir: string;
  const tags = new Set<string>();
  let sut: Sut | undefined;

  const spec = (password: string) => {
    const file = path.join(workDir, 'topas.yaml');
    const text = `name: pgtpl
databases:
  - name: db
    image: local/postgres:15
    port: 5432
    credentials: { user: admin, password: ${password}, dbname: tpldb }
    initSQL: |
      CREATE TABLE users (id serial PRIMARY KEY, name text NOT NULL);
      INSERT INTO users (name) VALUES ('alice');
    ready: { timeout: 60s }
`;
    fs.writeFileSync(file, text);
    return parseAppSpec(text, file);
  };
  const ctx = (runId: string, lines: string[], signal?: AbortSignal) => ({ runId, workDir, log: (l: string) => lines.push(l), processEnv: process.env, ...(signal ? { signal } : {}) });
  const keptTag = (lines: string[]) => /kept an initialised copy of \S+ as (topas-pg-template:[0-9a-f]+) in (\d+) ms/.exec(lines.join('\n'));

  before(() => {
    execFileSync(path.join(REPO_ROOT, 'scripts', 'ensure-docker.sh'), { stdio: 'inherit', timeout: 10 * 60_000 });
    execFileSync(path.join(REPO_ROOT, 'scripts', 'build-fixture-images.sh'), { stdio: 'inherit', timeout: 20 * 60_000 });
    workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-pgtpl-'));
  });

  after(async () => {
    await sut?.dispose();
    for (const tag of tags) execFileSync('docker', ['image', 'rm', '-f', tag], { stdio: 'ignore' });
    fs.rmSync(workDir, { recursive: true, force: true });
  });

  test('the first run makes the copy; the second starts from it, with initSQL applied anew and nothing of the first run in it', async (t) => {
    const first: string[] = [];
    const run1 = `pgtpl1-${process.pid}`;
    let t0 = Date.now();
    sut = await backend.start(spec(password), ctx(run1, first));
    const firstMs = Date.now() - t0;
    assert.deepEqual(await users(sut), ['alice']);
    // written by this run only: the next run must not see it
    const c = new Client({ connectionString: sut.endpoint('db') });
    await c.connect();
    await c.query("INSERT INTO users (name) VALUES ('written-by-run-1')");
    await c.end();
    await sut.dispose();
    sut = undefined;
    const kept = keptTag(first);
    assert.ok(kept, `no template made:\n${first.join('\n')}`);
    const tag = kept[1];
    tags.add(tag);
    assert.equal(docker('image', 'inspect', '-f', '{{ index .Config.Labels "topas.pg-template" }}', tag), '1');
    // the password does not stay in the image's configuration
    assert.ok(!docker('image', 'inspect', '-f', '{{ json .Config.Env }}', tag).includes(password));
    assert.deepEqual(containers(`topas.pg-template-build=${run1}`), []);
    assert.deepEqual(containers(`topas.run=${run1}`), []);

    const second: string[] = [];
    const run2 = `pgtpl2-${process.pid}`;
    t0 = Date.now();
    sut = await backend.start(spec(password), ctx(run2, second));
    const secondMs = Date.now() - t0;
    t.diagnostic(`database stand-up: ${firstMs} ms initialising, ${secondMs} ms from the copy (copy made in ${kept[2]} ms, in the background)`);
    assert.equal(keptTag(second), null);
    const [id] = containers(`topas.run=${run2}`);
    assert.equal(docker('inspect', '-f', '{{ .Config.Image }}', id), tag);
    // its labels are its run's: none left from the container the copy was made in
    assert.equal(docker('inspect', '-f', '{{ index .Config.Labels "topas.pg-template-build" }}', id), '');
    assert.deepEqual(await users(sut), ['alice']);
    await sut.dispose();
    sut = undefined;
    assert.deepEqual(containers(`topas.run=${run2}`), []);
  });

  test('other credentials get a copy of their own; an interrupted run leaves no copy and no container', async () => {
    const lines: string[] = [];
    const run3 = `pgtpl3-${process.pid}`;
    const abort = new AbortController();
    sut = await backend.start(spec(`${password}-other`), ctx(run3, lines, abort.signal));
    assert.deepEqual(await users(sut), ['alice']);
    // Ctrl-C while the copy is being made
    abort.abort();
    await sut.dispose();
    sut = undefined;
    const kept = keptTag(lines);
    if (kept) tags.add(kept[1]);
    assert.equal(kept, null, lines.join('\n'));
    assert.deepEqual(containers(`topas.pg-template-build=${run3}`), []);
    assert.deepEqual(containers(`topas.run=${run3}`), []);
  });
});
