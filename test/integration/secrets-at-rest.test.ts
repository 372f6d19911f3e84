import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { cli, REPO_ROOT, type CliRun } from '../helpers/cli';
import { clearRegisteredSecrets } from '../../src/spec/secrets';

/**
 * The app of fixtures/secrets has secrets made of every character that changes
 * under encoding; its scenario and load script log them, put them in step,
 * check and request names, URLs and error messages. Nothing topas stores
 * (.topas/) or prints (reports of every format, the load summary, the console)
 * may hold them, in any encoding a secret takes on the way out. Every CLI call
 * starts with an empty secret registry, as a separate process would.
 */
const FIXTURE = path.join(REPO_ROOT, 'fixtures', 'secrets');
const SECRETS = {
  'database password': `pw&<>"' %/+db1`,
  API_TOKEN: `tok&<>"' %/+api2`,
  SECRET_KEY: `key&<>"' %/+sk3`,
};

const lowerHex = (s: string) => s.replace(/%[0-9A-F]{2}/g, (m) => m.toLowerCase());
const xmlEscape = (s: string, apos: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, apos);
const entities = (s: string, hex: boolean) => s.replace(/[&<>"']/g, (c) => (hex ? `&#x${c.charCodeAt(0).toString(16)};` : `&#${c.charCodeAt(0)};`));

/** The forms a secret takes in URLs, JSON, XML and HTML (and their common combinations). */
function encodingsOf(secret: string): Map<string, string> {
  const out = new Map<string, string>();
  const add = (name: string, value: string) => {
    if (![...out.values()].includes(value)) out.set(name, value);
  };
  const component = encodeURIComponent(secret);
  const form = new URLSearchParams({ x: secret }).toString().slice(2);
  const json = JSON.stringify(secret).slice(1, -1);
  add('raw', secret);
  add('encodeURIComponent', component);
  add('encodeURIComponent, lowercase hex', lowerHex(component));
  add('form encoding', form);
  add('form encoding, lowercase hex', lowerHex(form));
  add('encodeURI', encodeURI(secret));
  add('URL path', new URL(`http://h/${secret}`).pathname.slice(1));
  add('URL query', new URL(`http://h/?${secret}`).search.slice(1));
  add('JSON string', json);
  add('JSON string in a JSON string', JSON.stringify(json).slice(1, -1));
  add('XML (&apos;)', xmlEscape(secret, '&apos;'));
  add('HTML (&#39;)', xmlEscape(secret, '&#39;'));
  add('numeric entities', entities(secret, false));
  add('hex entities', entities(secret, true));
  add('XML of a JSON string', xmlEscape(json, '&apos;'));
  add('HTML of a JSON string', xmlEscape(json, '&#39;'));
  add('XML of encodeURI', xmlEscape(encodeURI(secret), '&apos;'));
  add('XML of a URL query', xmlEscape(new URL(`http://h/?${secret}`).search.slice(1), '&apos;'));
  add('SQL literal', secret.replace(/'/g, "''"));
  add('XML of an SQL literal', xmlEscape(secret.replace(/'/g, "''"), '&apos;'));
  add('JSON of an SQL literal', JSON.stringify(secret.replace(/'/g, "''")).slice(1, -1));
  // base64 of user:secret (Basic auth), the part only the secret decides
  const b64 = Buffer.from(`app:${secret}`).toString('base64');
  add('base64 in a Basic auth header', b64.slice(6, -2));
  return out;
}

function assertNoSecrets(where: string, text: string): void {
  for (const [label, secret] of Object.entries(SECRETS)) {
    for (const [encoding, form] of encodingsOf(secret)) {
      const i = text.indexOf(form);
      if (i >= 0) assert.fail(`${where} holds the ${label} (${encoding}): …${text.slice(Math.max(0, i - 80), i + form.length + 40)}…`);
    }
  }
}

/** Every file and folder under `dir`. */
function walk(dir: string): { files: string[]; dirs: string[] } {
  const files: string[] = [];
  const dirs: string[] = [dir];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) {
      const sub = walk(p);
      files.push(...sub.files);
      dirs.push(...sub.dirs);
    } else files.push(p);
  }
  return { files, dirs };
}

function mode(p: string): string {
  return (fs.statSync(p).mode & 0o777).toString(8);
}

// the same on both backends: docker's containers and network carry the same secrets in other places
for (const backend of ['local', 'docker'] as const) describe(`secrets are never stored or printed (${backend})`, () => {
  let appDir: string;
  let outDir: string;
  let app: string[];
  const outputs: Array<{ what: string; run: CliRun }> = [];
  const call = async (what: string, argv: string[]) => {
    clearRegisteredSecrets();
    const run = await cli(argv);
    outputs.push({ what, run });
    return run;
  };

  before(() => {
    appDir = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-secrets-'));
    outDir = path.join(appDir, 'reports');
    for (const f of fs.readdirSync(FIXTURE)) fs.copyFileSync(path.join(FIXTURE, f), path.join(appDir, f));
    const spec = path.join(appDir, 'topas.yaml');
    fs.writeFileSync(spec, fs.readFileSync(spec, 'utf8').replace('../apps/mock-app/server.js', path.join(REPO_ROOT, 'fixtures', 'apps', 'mock-app', 'server.js')));
    app = ['--app', spec, '--backend', backend];
  });

  after(async () => {
    clearRegisteredSecrets();
    await cli(['down', '--app', path.join(appDir, 'topas.yaml')]);
    fs.rmSync(appDir, { recursive: true, force: true });
  });

  test('run, report, load and up/down mask every encoding; .topas/ is private', async () => {
    const up = await call('up', ['up', ...app]);
    assert.equal(up.code, 0, up.stderr);
    const stateFile = path.join(appDir, '.topas', 'state.json');
    // state.json must hold the real credentials (a later process attaches with them): private instead
    assert.equal(mode(stateFile), '600', 'state.json is private');
    assert.equal(mode(path.join(appDir, '.topas')), '700', '.topas is private');

    const run = await call('run', ['run', path.join(appDir, 'leak.lua'), ...app, '--continue-on-failure', '--reporter', 'table', '--reporter', `json:${path.join(outDir, 'report.json')}`, '--reporter', `junit:${path.join(outDir, 'report.xml')}`]);
    assert.equal(run.code, 1, run.stderr + run.stdout);
    assert.match(run.stdout, /call with \*\*\*/, 'step names are masked, not dropped');
    assert.match(run.stdout, /failed with \*\*\*/);
    const runId = /run (\S+)/.exec(run.stdout)?.[1];
    assert.ok(runId, run.stdout);
    assert.match(fs.readFileSync(path.join(outDir, 'report.xml'), 'utf8'), /testcase name="call with \*\*\*"/);
    assertNoSecrets('--reporter json:FILE', fs.readFileSync(path.join(outDir, 'report.json'), 'utf8'));
    assertNoSecrets('--reporter junit:FILE', fs.readFileSync(path.join(outDir, 'report.xml'), 'utf8'));

    for (const format of ['table', 'json', 'junit']) {
      const r = await call(`report --format ${format}`, ['report', runId, '--app', path.join(appDir, 'topas.yaml'), '--format', format]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /\*\*\*/);
    }
    const junitFile = path.join(outDir, 'again.xml');
    const rOut = await call('report -o', ['report', runId, '--app', path.join(appDir, 'topas.yaml'), '--format', 'junit', '-o', junitFile]);
    assert.equal(rOut.code, 0, rOut.stderr);
    assertNoSecrets('report -o FILE', fs.readFileSync(junitFile, 'utf8'));

    const loadJson = await call('load --json', ['load', path.join(appDir, 'leak-load.lua'), ...app, '--json']);
    assert.equal(loadJson.code, 0, loadJson.stderr);
    const summary = JSON.parse(loadJson.stdout);
    assert.ok(Object.keys(summary.metrics).some((k) => k.includes('***')), 'metric names with secrets are masked');
    assert.ok(summary.errors.length > 0 && summary.errors.every((e: { message: string }) => e.message.includes('***')), JSON.stringify(summary.errors));
    const load = await call('load', ['load', path.join(appDir, 'leak-load.lua'), ...app]);
    assert.equal(load.code, 0, load.stderr);
    assert.match(load.stdout, /\*\*\*/, 'the summary table names metrics, masked');

    const ps = await call('ps', ['ps', '--app', path.join(appDir, 'topas.yaml')]);
    assert.equal(ps.code, 0, ps.stderr);
    assert.equal(mode(stateFile), '600', 'state.json stays private after runs attached to it');
    const down = await call('down', ['down', '--app', path.join(appDir, 'topas.yaml')]);
    assert.equal(down.code, 0, down.stderr);

    for (const { what, run: r } of outputs) {
      assertNoSecrets(`stdout of ${what}`, r.stdout);
      assertNoSecrets(`stderr of ${what}`, r.stderr);
    }
    // the secrets did reach the record, masked: debug lines and events included
    const runLog = fs.readFileSync(path.join(appDir, '.topas', 'runs', runId, 'log.ndjson'), 'utf8');
    assert.match(runLog, /"level":"debug","message":"secret key \*\*\*"/);
    assert.match(runLog, /step-end.*call with \*\*\*/);
    assert.match(fs.readFileSync(path.join(appDir, '.topas', 'runs', summary.runId, 'run.json'), 'utf8'), /ok \*\*\*/);
    const { files, dirs } = walk(path.join(appDir, '.topas'));
    assert.ok(files.some((f) => f.endsWith('run.json')) && files.some((f) => f.endsWith('log.ndjson')), files.join('\n'));
    for (const f of files) {
      assertNoSecrets(path.relative(appDir, f), fs.readFileSync(f, 'utf8'));
      assert.equal(mode(f), '600', `${path.relative(appDir, f)} is private`);
    }
    for (const d of dirs) assert.equal(mode(d), '700', `${path.relative(appDir, d) || '.'} is private`);
  });
});
