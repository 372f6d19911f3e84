#!/usr/bin/env node
'use strict';
// Runs the compiled test tiers with node's built-in runner, one tier after
// another (integration tests share Docker and ports, so they run one file at a
// time), and ends with one `N passed, N failed` line that CI can read.
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const tiers = [
  { name: 'unit', concurrency: 2 },
  { name: 'cli', concurrency: 1 },
  { name: 'integration', concurrency: 1 },
];
const wanted = process.argv.slice(2);
// Other topas runs may share the machine: the suite gets a private TMPDIR (0700,
// as mktemp -d makes it), so its run registries and sweeps see only its own runs.
const privateTmp = fs.mkdtempSync(path.join(process.env.TMPDIR || os.tmpdir(), 'topas-tests-'));
let passed = 0;
let failed = 0;
let skipped = 0;

function listTests(dir) {
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir, { recursive: true })
    .map((f) => path.join(dir, String(f)))
    .filter((f) => f.endsWith('.test.js'))
    .sort();
}

for (const tier of tiers) {
  if (wanted.length && !wanted.includes(tier.name)) continue;
  const files = listTests(path.join(root, 'dist', 'test', tier.name));
  if (files.length === 0) continue;
  process.stdout.write(`\n=== ${tier.name} tests (${files.length} files) ===\n`);
  const r = spawnSync(process.execPath, ['--test', `--test-concurrency=${tier.concurrency}`, '--test-reporter=tap', ...files], {
    cwd: root,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    maxBuffer: 256 * 1024 * 1024,
    env: { ...process.env, TMPDIR: privateTmp, TESTCONTAINERS_RYUK_DISABLED: 'true' },
  });
  process.stdout.write(r.stdout);
  const num = (label) => {
    const m = r.stdout.match(new RegExp(`^# ${label} (\\d+)$`, 'm'));
    return m ? Number(m[1]) : 0;
  };
  passed += num('pass');
  failed += num('fail') + num('cancelled');
  skipped += num('skipped') + num('todo');
  if (r.status !== 0 && num('fail') + num('cancelled') === 0) failed += 1; // the runner itself failed
  // a file the runner lists as one entry under its own path registered no tests: it
  // ended before they ran (e.g. something called process.exit), which must not pass
  const empty = [...r.stdout.matchAll(/^ok \d+ - (\S+\.test\.js)$/gm)].map((m) => m[1]);
  for (const f of empty) process.stdout.write(`not ok - ${path.relative(root, f)} ran no tests\n`);
  failed += empty.length;
  passed -= empty.length;
}

// best effort: a leftover here is reported by the tests that check for leftovers
fs.rmSync(privateTmp, { recursive: true, force: true, maxRetries: 3 });

process.stdout.write(`\n${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}\n`);
process.exitCode = failed > 0 ? 1 : 0;
