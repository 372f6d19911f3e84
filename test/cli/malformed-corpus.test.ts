import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { REPO_ROOT, cli } from '../helpers/cli';

/**
 * Hostile and absurd input, in-process: every case must end with exit 2 before
 * anything starts, with a message naming the field, flag or file, no JS stack,
 * nothing left running and no run record written.
 *
 * Fixture files under fixtures/malformed/ carry their expectations in comment
 * lines (`# expect: services[0].replicas`, `-- expect: bad.lua:3`); the few that
 * cannot hold a comment, the generated ones (too big to commit) and the flag
 * cases are in the tables below.
 */

const CORPUS = path.join(REPO_ROOT, 'fixtures', 'malformed');
const TRIVIAL = 'fixtures/lua/trivial.lua';
const LOAD_OK = 'fixtures/malformed/load/ok.lua';

interface Case {
  name: string;
  argv: () => string[];
  expect: string[];
  /** set in process.env for the case only (the app spec reads ${VAR} from the process) */
  processEnv?: Record<string, string>;
}

/** Files that are inputs for other cases (role scripts, the valid load script), not cases themselves. */
const NOT_CASES = new Set(['playbooks/role.lua', 'playbooks/broken-role.lua', 'playbooks/folder.lua', 'load/ok.lua']);
/** Fixtures that cannot carry an `expect:` comment. */
const TABLE_EXPECT: Record<string, string[]> = {
  'specs/empty.yaml': ['empty.yaml: the app spec is empty'],
  'specs/utf16.yaml': ['utf16.yaml', 'not a text file'],
  'load/broken.postman_collection.json': ['broken.postman_collection.json: not valid JSON'],
  'load/not-a-collection.json': ['not-a-collection.json: valid JSON, but no Postman collection schema'],
  'load/binary.json': ['binary.json: not valid JSON'],
};

function expectationsOf(rel: string): string[] {
  if (TABLE_EXPECT[rel]) return TABLE_EXPECT[rel];
  const text = fs.readFileSync(path.join(CORPUS, rel), 'latin1');
  return text
    .split('\n')
    .map((l) => /^(?:\uFEFF|\xEF\xBB\xBF)?(?:#|--) expect: (.*?)\r?$/.exec(l)?.[1])
    .filter((e): e is string => e !== undefined);
}

function fileCases(): Case[] {
  const out: Case[] = [];
  const argvFor: Record<string, (rel: string) => string[]> = {
    specs: (rel) => ['run', TRIVIAL, '--app', rel, '--backend', 'local'],
    playbooks: (rel) => ['run', rel, '--backend', 'local'],
    lua: (rel) => ['run', rel, '--backend', 'local'],
    load: (rel) => ['load', rel, '--backend', 'local'],
  };
  for (const kind of Object.keys(argvFor)) {
    for (const f of fs.readdirSync(path.join(CORPUS, kind)).sort()) {
      const rel = `${kind}/${f}`;
      if (NOT_CASES.has(rel) || !/\.(ya?ml|lua|json)$/.test(f)) continue;
      const expect = expectationsOf(rel);
      assert.ok(expect.length > 0, `${rel} has no "expect:" line and no entry in TABLE_EXPECT`);
      out.push({ name: rel, argv: () => argvFor[kind](`fixtures/malformed/${rel}`), expect });
    }
  }
  return out;
}

/** Scratch inputs made per run: too big to commit, or paths that must not exist. */
let tmp = '';
const t = (...p: string[]) => path.join(tmp, ...p);
const MiB = 1024 * 1024;

function makeScratch(): void {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-malformed-'));
  const service = (env: string) => `services:\n  - name: api\n    command: ["node", "server.js"]\n    port: 8080\n    env:\n${env}`;
  fs.writeFileSync(t('big-env-value.yaml'), service(`      BLOB: "${'x'.repeat(3 * MiB)}"\n`));
  fs.writeFileSync(t('env-total.yaml'), service(Array.from({ length: 10 }, (_, i) => `      V${i}: "${'y'.repeat(120 * 1024)}"\n`).join('')));
  fs.writeFileSync(t('env-from-environment.yaml'), service('      BLOB: ${TOPAS_CORPUS_BLOB}\n'));
  fs.writeFileSync(t('too-large.yaml'), `${service('      A: "1"\n')}${`# padding ${'z'.repeat(1000)}\n`.repeat(5 * 1024)}`);
  fs.writeFileSync(t('too-large-playbook.yaml'), `roles:\n  - name: a\n    script: a.lua\n${`# ${'z'.repeat(1000)}\n`.repeat(5 * 1024)}`);
  fs.writeFileSync(t('env-600k.yaml'), service(Array.from({ length: 5 }, (_, i) => `      S${i}: "${'s'.repeat(120 * 1024)}"\n`).join('')));
  const entry = (i: number, replicas: number) => `  - name: s${i}\n    command: [node]\n    port: ${10000 + i}\n    replicas: ${replicas}\n`;
  fs.writeFileSync(t('many-services.yaml'), `services:\n${Array.from({ length: 201 }, (_, i) => entry(i, 1)).join('')}`);
  fs.writeFileSync(t('many-replicas.yaml'), `services:\n${Array.from({ length: 11 }, (_, i) => entry(i, 100)).join('')}`);
  fs.writeFileSync(t('a-file.lua'), 'local x = 1\n');
  fs.writeFileSync(t('notes.txt'), 'not a scenario\n');
  fs.writeFileSync(t('existing.xml'), '');
  fs.mkdirSync(t('empty-folder'));
  fs.mkdirSync(t('folder-without-spec'));
}

const bigValue = () => 'v'.repeat(3 * MiB);
const manyEnv = (n = 10) => Array.from({ length: n }, (_, i) => ['--env', `E${i}=${'w'.repeat(120 * 1024)}`]).flat();

function tableCases(): Case[] {
  const run = (...flags: string[]) => () => ['run', TRIVIAL, ...flags];
  const load = (...flags: string[]) => () => ['load', LOAD_OK, ...flags];
  const c = (name: string, argv: () => string[], ...expect: string[]): Case => ({ name, argv, expect });
  return [
    // generated app specs and playbooks
    c('spec: a 3 MB env value', () => ['run', TRIVIAL, '--app', t('big-env-value.yaml')], 'services[0].env.BLOB: the value is 3 MiB', 'at most 128 KiB'),
    c('spec: env adding up past 1 MiB', () => ['run', TRIVIAL, '--app', t('env-total.yaml')], 'services[0].env: the variables add up to', 'at most 1 MiB'),
    { name: 'spec: a 3 MB value from ${VAR}', argv: () => ['run', TRIVIAL, '--app', t('env-from-environment.yaml')], expect: ['services[0].env.BLOB: the value is 3 MiB'], processEnv: { TOPAS_CORPUS_BLOB: 'b'.repeat(3 * MiB) } },
    c('spec: 201 services', () => ['run', TRIVIAL, '--app', t('many-services.yaml')], 'services: 201 services and databases; an app has at most 200'),
    c('spec: 1100 replicas in all', () => ['run', TRIVIAL, '--app', t('many-replicas.yaml')], 'services: 1100 replicas in all; an app runs at most 1000'),
    c('spec: a 5 MB file', () => ['run', TRIVIAL, '--app', t('too-large.yaml')], 'too-large.yaml', 'at most 4 MiB'),
    c('playbook: a 5 MB file', () => ['run', t('too-large-playbook.yaml')], 'too-large-playbook.yaml', 'at most 4 MiB'),
    c('up: replicas 1000000000', () => ['up', '--app', 'fixtures/malformed/specs/replicas-billion.yaml', '--backend', 'local'], 'services[0].replicas: expected integer 0-100'),
    c('up: unclosed reference', () => ['up', '--app', 'fixtures/malformed/specs/unclosed-reference.yaml', '--backend', 'local'], 'services[0].env.DATABASE_URL: unclosed reference "${db.url"'),
    c('up: alias bomb', () => ['up', '--app', 'fixtures/malformed/specs/yaml-alias-bomb.yaml'], 'too many YAML alias'),
    c('up: --env without =', () => ['up', '--app', 'fixtures/malformed/specs/replicas-101.yaml', '--env', 'NOEQUALS'], '--env: expected K=V'),
    c('run: spec env and --env together past 1 MiB', () => ['run', TRIVIAL, '--app', t('env-600k.yaml'), ...manyEnv(5)], 'services[0].env + --env: the variables add up to'),
    c('up: spec env and --env together past 1 MiB', () => ['up', '--app', t('env-600k.yaml'), ...manyEnv(5)], 'services[0].env + --env'),
    c('load: spec env and --env together past 1 MiB', () => ['load', LOAD_OK, '--app', t('env-600k.yaml'), ...manyEnv(5)], 'services[0].env + --env'),
    c('load: app spec with replicas 1000000000', load('--app', 'fixtures/malformed/specs/replicas-billion.yaml'), 'services[0].replicas'),

    // topas run: flags
    c('run --parallel 0', run('--parallel', '0'), '--parallel'),
    c('run --parallel 1001', run('--parallel', '1001'), '--parallel', '1000'),
    c('run --parallel abc', run('--parallel', 'abc'), '--parallel'),
    c('run --parallel 1.5', run('--parallel', '1.5'), '--parallel'),
    c('run --workers 0', run('--workers', '0'), '--workers'),
    c('run --workers 100000', run('--workers', '100000'), '--workers', '256'),
    c('run --timeout forever', run('--timeout', 'forever'), '--timeout'),
    c('run --timeout 99999h', run('--timeout', '99999h'), '--timeout: expected at most 7 days'),
    c('run --timeout ""', run('--timeout', ''), '--timeout'),
    c('run --timeout 0s (would mean no limit)', run('--timeout', '0s'), '--timeout: expected a duration above 0, got "0s"'),
    c('run --timeout 0', run('--timeout', '0'), '--timeout: expected a duration above 0'),
    c('run --reporter nope', run('--reporter', 'nope'), '--reporter nope', 'unknown reporter "nope"'),
    c('run --reporter junit:<file>/x.xml (parent is a file)', () => ['run', TRIVIAL, '--reporter', `junit:${t('a-file.lua', 'x.xml')}`], '--reporter junit:', 'a-file.lua is a file'),
    c('run --reporter junit:<folder>', () => ['run', TRIVIAL, '--reporter', `junit:${t('empty-folder')}`], '--reporter junit:', 'is a folder'),
    c('run --reporter junit: (no path)', run('--reporter', 'junit:'), '--reporter junit:', 'expected a file path'),
    c('run two reporters, one file', () => ['run', TRIVIAL, '--reporter', `junit:${t('r.xml')}`, '--reporter', `json:${t('r.xml')}`], '--reporter json:', 'writes the same file'),
    c('run --reporter nope:file and junit:<folder>', () => ['run', TRIVIAL, '--reporter', `nope:${t('n.txt')}`, '--reporter', `junit:${t('empty-folder')}`], '--reporter nope:'),
    c('run --json --reporter table', run('--json', '--reporter', 'table'), '--json'),
    c('run --env NOEQUALS', run('--env', 'NOEQUALS'), '--env: expected K=V, got "NOEQUALS"'),
    c('run --env =value', run('--env', '=value'), '--env: expected K=V'),
    c('run --env BIG=<3 MB>', () => ['run', TRIVIAL, '--env', `BIG=${bigValue()}`], '--env BIG: the value is 3 MiB'),
    c('run --env adding up past 1 MiB', () => ['run', TRIVIAL, ...manyEnv()], '--env: the variables add up to'),
    c('run --metrics-port 70000', run('--metrics-port', '70000'), '--metrics-port'),
    c('run --bogus', run('--bogus'), '--bogus'),
    c('run --git-path without --git', run('--git-path', 'e2e'), '--git'),
    c('run --backend nope with an app', () => ['run', TRIVIAL, '--app', 'fixtures/cli/with-app/topas.yaml', '--backend', 'nope'], '--backend', 'unknown backend "nope"'),
    c('run: no target', () => ['run'], 'give at least one scenario'),
    c('run: a missing scenario', () => ['run', 'fixtures/malformed/does-not-exist.lua'], 'does-not-exist.lua: no such file'),
    c('run: a folder without scenarios', () => ['run', t('empty-folder')], 'empty-folder: folder holds no .lua scenario'),
    c('run: a .txt target', () => ['run', t('notes.txt')], 'notes.txt: expected a .lua scenario'),
    c('run: a glob matching nothing', () => ['run', 'fixtures/malformed/nothing-*.lua'], 'nothing-*.lua: glob matched no scenario'),
    c('run --app /dev/zero', run('--app', '/dev/zero'), '/dev/zero', 'not a regular file'),
    c('up --app /dev/zero', () => ['up', '--app', '/dev/zero'], '/dev/zero', 'not a regular file'),
    c('load: /dev/zero as the script', () => ['load', '/dev/zero'], '/dev/zero is not a regular file'),
    c('run --app missing', run('--app', 'fixtures/malformed/nope.yaml'), 'nope.yaml does not exist'),
    c('run --app folder without topas.yaml', () => ['run', TRIVIAL, '--app', t('folder-without-spec')], 'folder-without-spec/topas.yaml'),
    c('run: a folder named like a script', () => ['run', 'fixtures/malformed/playbooks/folder.lua'], 'folder.lua: folder holds no .lua scenario'),

    // topas test schedule: the same flags, refused before anything is queued
    c('test schedule --timeout 99999h', () => ['test', 'schedule', TRIVIAL, '--timeout', '99999h'], '--timeout: expected at most 7 days'),
    c('test schedule --env BIG=<3 MB>', () => ['test', 'schedule', TRIVIAL, '--env', `BIG=${bigValue()}`], '--env BIG'),
    c('test schedule --reporter junit:<folder>', () => ['test', 'schedule', TRIVIAL, '--reporter', `junit:${t('empty-folder')}`], '--reporter junit:', 'is a folder'),
    c('test schedule --timeout 0s', () => ['test', 'schedule', TRIVIAL, '--timeout', '0s'], '--timeout: expected a duration above 0'),
    c('test schedule --parallel 0', () => ['test', 'schedule', TRIVIAL, '--parallel', '0'], '--parallel'),

    // topas load: flags
    c('load --rate 1000000000000/s', load('--rate', '1000000000000/s', '--duration', '1s'), '--rate: at most 1,000,000 iterations per second'),
    c('load --rate 2000/1ms', load('--rate', '2000/1ms'), '--rate: at most 1,000,000'),
    c('load --rate 0/s', load('--rate', '0/s'), '--rate: expected a rate above 0'),
    c('load --rate abc', load('--rate', 'abc'), '--rate: expected a rate like'),
    c('load --rate 10/0s', load('--rate', '10/0s'), '--rate'),
    c('load --rate -5/s', load('--rate=-5/s'), '--rate'),
    c('load --max-vus 0', load('--max-vus', '0'), '--max-vus'),
    c('load --max-vus 1000000000', load('--max-vus', '1000000000'), '--max-vus', '100000'),
    c('load --duration 0s', load('--duration', '0s'), '--duration'),
    c('load --duration 99999h', load('--duration', '99999h'), '--duration: expected at most 7 days'),
    c('load --duration abc', load('--duration', 'abc'), '--duration: expected a duration'),
    c('load --ramp 99999h', load('--ramp', '99999h'), '--ramp: expected at most 7 days'),
    c('load --ramp longer than --duration', load('--rate', '1/s', '--duration', '1s', '--ramp', '5s'), '--ramp: the ramp'),
    c('load --threshold without a metric', load('--threshold', 'p(95)<250'), '--threshold'),
    c('load --threshold with a bad expression', load('--threshold', 'http_req_duration:p95'), '--threshold[1]'),
    c('load --threshold p(95)<1e309 (Infinity)', load('--threshold', 'http_req_duration:p(95)<1e309'), '--threshold[1]', '1e309 is not a finite number'),
    c('load --threshold with a 400-digit bound', load('--threshold', `http_req_duration:p(95)<${'9'.repeat(400)}`), '--threshold[1]', 'is not a finite number'),
    c('load --threshold p(200)<1', load('--threshold', 'http_req_duration:p(200)<1'), '--threshold[1]', 'a percentile is between 0 and 100'),
    c('load --max-regression x', load('--max-regression', 'x'), '--max-regression'),
    c('load --workers 0', load('--workers', '0'), '--workers'),
    c('load --workers 100000', load('--workers', '100000'), '--workers'),
    c('load --env BIG=<3 MB>', () => ['load', LOAD_OK, '--env', `BIG=${bigValue()}`], '--env BIG: the value is 3 MiB'),
    c('load --folder without a collection', load('--folder', 'users'), '--folder'),
    c('load --baseline missing', load('--baseline', 'no-such-baseline.json'), '--baseline no-such-baseline.json'),
    c('load --backend nope with an app', () => ['load', LOAD_OK, '--app', 'fixtures/cli/with-app/topas.yaml', '--backend', 'nope'], '--backend', 'unknown backend "nope"'),
    c('load: a missing script', () => ['load', 'fixtures/malformed/load/nope.lua'], 'nope.lua not found'),
    c('load: a folder as the script', () => ['load', 'fixtures/malformed/load'], 'fixtures/malformed/load is a folder'),
    c('load: a Lua syntax error in a role script', () => ['load', 'fixtures/malformed/playbooks/broken-role.lua'], 'broken-role.lua:4'),
    c('load: no script', () => ['load'], 'file'),

    // topas report: flags
    c('report --output <folder>', () => ['report', '20200101-000000-000-10-000000', '--output', t('empty-folder')], '--output', 'is a folder'),
    c('report --output under a file', () => ['report', '20200101-000000-000-10-000000', '--output', t('a-file.lua', 'r.txt')], '--output', 'a-file.lua is a file'),
    c('report --format nope', () => ['report', '20200101-000000-000-10-000000', '--format', 'nope'], '--format'),
  ];
}

/** Child processes of this test process (the CLI runs in-process, so anything it spawned is ours). */
function childPids(): Set<number> {
  const out = new Set<number>();
  const taskDir = `/proc/${process.pid}/task`;
  if (!fs.existsSync(taskDir)) return out;
  for (const tid of fs.readdirSync(taskDir)) {
    try {
      for (const p of fs.readFileSync(path.join(taskDir, tid, 'children'), 'utf8').trim().split(/\s+/)) if (p) out.add(Number(p));
    } catch {
      // the thread ended meanwhile
    }
  }
  return out;
}

function isAlive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^\d+ \(.*\) Z/.test(stat);
  } catch {
    return false;
  }
}

/** Run records anywhere under these folders (no case may write one). */
function runRecordDirs(roots: string[]): string[] {
  const found: string[] = [];
  const walk = (dir: string, depth: number) => {
    if (depth > 4 || !fs.existsSync(dir)) return;
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      if (!e.isDirectory() || ['.git', 'node_modules', 'dist'].includes(e.name)) continue;
      const p = path.join(dir, e.name);
      if (e.name === '.topas') {
        const runs = path.join(p, 'runs');
        if (fs.existsSync(runs)) for (const r of fs.readdirSync(runs)) found.push(path.join(runs, r));
      } else walk(p, depth + 1);
    }
  };
  for (const r of roots) walk(r, 0);
  return found;
}

const STACK_LINE = /^\s+at .+(\(|:\d+)/m;
const JS_ERROR = /\b(?:Type|Range|Reference|Syntax|Eval|URI|Topas)?Error: /;

describe('malformed input corpus: exit 2, the field named, no stack, nothing started', () => {
  before(makeScratch);
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  const cases = [...fileCases(), ...tableCases()];
  const recordRoots = [CORPUS, path.join(REPO_ROOT, 'fixtures', 'lua'), path.join(REPO_ROOT, 'fixtures', 'cli', 'with-app'), REPO_ROOT];
  const recordsBefore = new Set(runRecordDirs(recordRoots));

  test(`the corpus holds at least 100 cases (${cases.length})`, () => {
    assert.ok(cases.length >= 100, `${cases.length} cases`);
  });

  for (const kase of cases) {
    test(kase.name, async () => {
      const childrenBefore = childPids();
      const saved: Record<string, string | undefined> = {};
      for (const [k, v] of Object.entries(kase.processEnv ?? {})) {
        saved[k] = process.env[k];
        process.env[k] = v;
      }
      let r;
      try {
        r = await cli(kase.argv());
      } finally {
        for (const [k, v] of Object.entries(saved)) {
          if (v === undefined) delete process.env[k];
          else process.env[k] = v;
        }
      }
      const output = `${r.stderr}\n${r.stdout}`;
      const shown = output.length > 3000 ? `${output.slice(0, 3000)}…` : output;
      assert.equal(r.code, 2, `exit code\n${shown}`);
      for (const e of kase.expect) assert.ok(output.includes(e), `expected ${JSON.stringify(e)} in:\n${shown}`);
      assert.doesNotMatch(output, STACK_LINE, 'a stack trace was printed');
      assert.doesNotMatch(output, JS_ERROR, 'a JS error was printed');
      assert.doesNotMatch(output, /INTERNAL/, 'an internal error');
      assert.doesNotMatch(output, /standing up app/, 'the SUT was being stood up');
      // nothing left running: no child process of ours outlives the case
      const leftover = [...childPids()].filter((p) => !childrenBefore.has(p) && isAlive(p));
      assert.deepEqual(leftover, [], 'child processes left running');
      assert.ok(r.stderr.length + r.stdout.length < 200_000, `output of ${r.stderr.length + r.stdout.length} characters`);
    });
  }

  test('no case wrote a run record, and no container is labelled with a corpus app', () => {
    // records carry the pid that wrote them: other test files running beside this one write their own
    const ours = (d: string) => {
      try {
        return JSON.parse(fs.readFileSync(path.join(d, 'run.json'), 'utf8')).pid === process.pid;
      } catch {
        return false;
      }
    };
    const added = runRecordDirs([...recordRoots, tmp]).filter((d) => !recordsBefore.has(d) && ours(d));
    assert.deepEqual(added, []);
    // the apps the corpus names (their folder names: specs, malformed, …); never a machine-wide look
    for (const app of ['specs', 'malformed', 'playbooks']) {
      let ids = '';
      try {
        ids = execFileSync('docker', ['ps', '-aq', '--filter', `label=topas.app=${app}`], { encoding: 'utf8', timeout: 10_000 }).trim();
      } catch {
        return; // no docker here: nothing can have been started there either
      }
      assert.equal(ids, '', `containers of app ${app}`);
    }
  });
});

describe('absurd values in calls made while running', () => {
  for (const [file, message] of [
    ['scale-billion.lua', 'sut.scale: replicas must be an integer 0-100, got 1000000000'],
    ['apply-billion.lua', 'sut.apply_service: replicas must be an integer 0-100, got 1000000000'],
  ]) {
    test(`${file}: the step fails naming the call, nothing is started`, async () => {
      // a run that starts writes its record under cwd: a private one
      const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-runtime-'));
      let r;
      try {
        r = await cli(['run', path.join(CORPUS, 'runtime', file), '--json'], { cwd });
      } finally {
        fs.rmSync(cwd, { recursive: true, force: true });
      }
      assert.equal(r.code, 1, r.stderr + r.stdout);
      assert.ok(r.stdout.includes(message), r.stdout);
      assert.doesNotMatch(r.stderr, STACK_LINE);
    });
  }
});

