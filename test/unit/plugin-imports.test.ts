import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';

// A plugin in this repository uses core as one outside it would: through the
// public API (`from 'topas'`, src/index.ts), never by a relative path into
// src/. Otherwise it breaks as soon as it is built or installed on its own.
const ROOT = path.resolve(__dirname, '..', '..', '..');
const PLUGINS = path.join(ROOT, 'plugins');

function sources(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return e.name === 'node_modules' ? [] : sources(p);
    return /\.(ts|js|mjs|cjs)$/.test(e.name) && !e.name.endsWith('.d.ts') ? [p] : [];
  });
}

const SPECIFIER = /(?:\bfrom\s*|\bimport\s*\(\s*|\brequire\s*\(\s*|^\s*import\s+)['"]([^'"]+)['"]/gm;

test('plugins import core only through the public API', () => {
  const offenders: string[] = [];
  for (const plugin of fs.readdirSync(PLUGINS)) {
    const pluginDir = path.join(PLUGINS, plugin);
    for (const dir of ['src', 'test-support']) {
      if (!fs.existsSync(path.join(pluginDir, dir))) continue;
      for (const file of sources(path.join(pluginDir, dir))) {
        for (const m of fs.readFileSync(file, 'utf8').matchAll(SPECIFIER)) {
          const spec = m[1];
          if (!spec.startsWith('.')) continue;
          const target = path.resolve(path.dirname(file), spec);
          if (!target.startsWith(pluginDir + path.sep)) offenders.push(`${path.relative(ROOT, file)}: '${spec}'`);
        }
      }
    }
  }
  assert.deepEqual(offenders, [], "import these from 'topas' (export what is missing from src/index.ts)");
});

// The published declarations must compile in a plugin whatever its
// esModuleInterop: `import fs from 'node:fs'` in a .d.ts does not without it.
test('the published declarations import node builtins as namespaces', () => {
  const dist = path.join(ROOT, 'dist', 'src');
  const declarations = (dir: string): string[] =>
    fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
      const p = path.join(dir, e.name);
      return e.isDirectory() ? declarations(p) : e.name.endsWith('.d.ts') ? [p] : [];
    });
  const offenders = declarations(dist).flatMap((file) =>
    [...fs.readFileSync(file, 'utf8').matchAll(/^import [A-Za-z_$][\w$]* from '(node:[^']+)'/gm)].map(
      (m) => `${path.relative(ROOT, file)}: ${m[1]}`,
    ),
  );
  assert.ok(fs.existsSync(dist), 'build first');
  assert.deepEqual(offenders, []);
});
