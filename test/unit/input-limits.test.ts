import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { TopasError } from '../../src/errors';
import { findUnclosedReference } from '../../src/spec/references';
import { parseAppSpec } from '../../src/spec/load-app-spec';
import { LIMITS, decodeText, envSizeProblems } from '../../src/util/limits';
import { checkReporterOutputs } from '../../src/run/render-reports';
import { parseEnvFlags, parseDurationFlag } from '../../src/cli/common-flags';

function problemsOf(fn: () => unknown): string[] {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof TopasError, `not a TopasError: ${String(e)}`);
    return e.problems.map((p) => `${p.path}: ${p.message}`);
  }
  assert.fail('expected a TopasError');
}

describe('unclosed ${ references', () => {
  test('findUnclosedReference finds a ${ without its }, and only that', () => {
    assert.equal(findUnclosedReference('${db.url'), '${db.url');
    assert.equal(findUnclosedReference('postgres://${db.host:${db.port}/x'), '${db.host:');
    assert.equal(findUnclosedReference('${db.url} and ${db.host'), '${db.host');
    assert.equal(findUnclosedReference('${db.url}'), undefined);
    assert.equal(findUnclosedReference('$${db.url'), undefined, '$${ is a literal ${');
    assert.equal(findUnclosedReference('cost: $5 {x}'), undefined);
  });

  test('the app spec names the field and the reference as written', () => {
    const text = 'services:\n  - name: api\n    command: [node]\n    port: 80\n    env:\n      DATABASE_URL: ${db.url\n      LITERAL: $${db.url\ndatabases:\n  - name: db\n';
    assert.deepEqual(problemsOf(() => parseAppSpec(text, 'topas.yaml')), [
      'services[0].env.DATABASE_URL: unclosed reference "${db.url" (a "${" needs its "}"; write $${ for a literal ${)',
    ]);
  });
});

describe('size limits', () => {
  test('one variable past 128 KiB and a service past 1 MiB in all are named', () => {
    assert.deepEqual(envSizeProblems({ A: 'x'.repeat(1000) }), []);
    const one = envSizeProblems({ BIG: 'x'.repeat(LIMITS.envEntryBytes) });
    assert.equal(one[0].name, 'BIG');
    const many = Object.fromEntries(Array.from({ length: 10 }, (_, i) => [`V${i}`, 'y'.repeat(120 * 1024)]));
    const all = envSizeProblems(many);
    assert.equal(all.length, 1);
    assert.equal(all[0].name, undefined);
    assert.match(all[0].message, /add up to .* at most 1 MiB/);
  });

  test('--env and --timeout past their bounds name the flag', () => {
    assert.match(problemsOf(() => parseEnvFlags([`BIG=${'v'.repeat(200 * 1024)}`]))[0], /^--env BIG: the value is 200 KiB/);
    assert.match(problemsOf(() => parseDurationFlag('169h', '--timeout'))[0] ?? '', /^--timeout/);
    assert.equal(parseDurationFlag('168h', '--timeout'), LIMITS.durationMs);
  });

  test('decodeText points at the first byte that is not UTF-8, and at NUL bytes', () => {
    assert.equal(decodeText(Buffer.from('a: ü\n'), 'f.yaml', 'INVALID_APP_SPEC', 'the app spec'), 'a: ü\n');
    assert.deepEqual(
      problemsOf(() => decodeText(Buffer.from([0x61, 0x0a, 0x62, 0x3a, 0x20, 0xfc, 0x62]), 'f.yaml', 'INVALID_APP_SPEC', 'the app spec')),
      ['f.yaml:2:4: byte 0xfc is not valid UTF-8; save the file as UTF-8'],
    );
    assert.match(problemsOf(() => decodeText(Buffer.from([0x61, 0x00]), 'f.yaml', 'INVALID_APP_SPEC', 'x'))[0], /^f\.yaml:1:2: binary content/);
  });

  test('an alias bomb is an input error naming the file', () => {
    const bomb = ['a: &a [x, x, x, x, x, x, x, x, x, x]', ...'bcdefgh'.split('').map((k, i) => `${k}: &${k} [${Array(10).fill(`*${'abcdefgh'[i]}`).join(', ')}]`)].join('\n');
    assert.deepEqual(problemsOf(() => parseAppSpec(bomb, 'bomb.yaml')), ['bomb.yaml: excessive YAML aliases (an alias bomb?); write the values out or use fewer aliases']);
  });
});

describe('reporter outputs are checked before the run', () => {
  test('a folder, a file as parent, an empty path and a shared file are refused; a new nested path is fine', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-reporter-check-'));
    try {
      fs.writeFileSync(path.join(dir, 't.lua'), '');
      const bad = problemsOf(() =>
        checkReporterOutputs(
          [
            { name: 'junit', file: 't.lua/x.xml' },
            { name: 'junit', file: '.' },
            { name: 'json', file: '' },
            { name: 'junit', file: 'a.xml' },
            { name: 'json', file: 'a.xml' },
          ],
          dir,
        ),
      );
      assert.deepEqual(bad, [
        '--reporter junit:t.lua/x.xml: t.lua is a file, so t.lua/x.xml cannot be created under it',
        '--reporter junit:.: . is a folder; give a file path',
        '--reporter json:: expected a file path after ":"',
        '--reporter json:a.xml: --reporter junit:a.xml writes the same file',
      ]);
      checkReporterOutputs([{ name: 'junit', file: 'reports/deep/x.xml' }, { name: 'table' }], dir);
      assert.equal(fs.existsSync(path.join(dir, 'reports')), false, 'the check creates nothing');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
