import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { connectEngine } from '../../src/backends/docker/engine';
import { isMissingImage, pruneTemplates } from '../../src/backends/docker/postgres-template';

// The initialised copies of database images (postgres-template.ts) are bounded: older ones and ones of
// another format go after a new one is made; one a container still uses stays.
const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');

function docker(args: string[], input?: string): string {
  return execFileSync('docker', args, { encoding: 'utf8', input, stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] }).trim();
}

function templateTags(): string[] {
  return docker(['images', '--filter', 'label=topas.pg-template=1', '--format', '{{.Repository}}:{{.Tag}}']).split('\n').filter(Boolean);
}

function exists(tag: string): boolean {
  try {
    docker(['image', 'inspect', tag]);
    return true;
  } catch {
    return false;
  }
}

describe('initialised database copies are pruned', () => {
  const prefix = `topas-pg-template:prune-${process.pid}`;
  const made: string[] = [];
  let holder: string | undefined;

  /** an image labelled as a template (format `format`), made now: its Created orders it */
  const fakeTemplate = (name: string, format: string): string => {
    const tag = `${prefix}-${name}`;
    docker(['build', '-q', '-t', tag, '-'], `FROM local/postgres:15\nLABEL topas.pg-template=${format} topas.prune-test=${name}-${process.pid}\n`);
    made.push(tag);
    return tag;
  };

  before(() => {
    execFileSync(path.join(REPO_ROOT, 'scripts', 'ensure-docker.sh'), { stdio: 'inherit', timeout: 10 * 60_000 });
    execFileSync(path.join(REPO_ROOT, 'scripts', 'build-fixture-images.sh'), { stdio: 'inherit', timeout: 20 * 60_000 });
  });

  after(() => {
    if (holder) execFileSync('docker', ['rm', '-f', holder], { stdio: 'ignore' });
    for (const tag of made) execFileSync('docker', ['image', 'rm', '-f', tag], { stdio: 'ignore' });
  });

  test('keeps the newest of the current format and any in use; removes the rest and every other format', async () => {
    const obsolete = fakeTemplate('obsolete', '0');
    const current: string[] = [];
    for (let i = 0; i < 6; i++) {
      current.push(fakeTemplate(`t${i}`, '1'));
      // Created has a resolution of one second
      await new Promise((r) => setTimeout(r, 1100));
    }
    // a container made from the oldest holds it
    holder = docker(['create', '--label', `topas.prune-test=holder-${process.pid}`, current[0], 'true']);
    const kept = current[5];

    const removed = await pruneTemplates((await connectEngine()).docker, kept, 3);

    assert.ok(exists(kept), 'the template just made stays');
    assert.ok(exists(current[4]) && exists(current[3]), 'the next newest stay, up to the limit');
    assert.ok(!exists(current[2]) && !exists(current[1]), `older ones go (removed: ${removed.join(', ')})`);
    assert.ok(exists(current[0]), 'one a container uses stays');
    assert.ok(!exists(obsolete), 'one of another format goes');
    assert.ok(removed.includes(obsolete) && removed.includes(current[1]) && removed.includes(current[2]));
    // of the current format, only the 3 kept and the one in use are left on the machine
    const left = templateTags();
    assert.ok(left.length <= 4, `templates left: ${left.join(', ')}`);
  });

  test('a template removed between the check and the create is recognised, so the database initialises instead', async () => {
    const client = (await connectEngine()).docker;
    const err = await client.createContainer({ Image: `${prefix}-gone`, Labels: { 'topas.prune-test': `gone-${process.pid}` } }).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(err, 'creating from a missing image fails');
    assert.ok(isMissingImage(err), `dockerode's error is read as a missing image: ${String((err as Error).message)}`);
    assert.ok(!isMissingImage(new Error('no such container')));
  });
});
