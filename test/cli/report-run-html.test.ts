import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { captureIo, cli } from '../helpers/cli';
import { streamLogs } from '../../src/run/schedule-service';

/**
 * `--reporter html` and `--reporter github` on `topas run` and `topas test
 * schedule`: a scratch app (one tiny HTTP service, local backend) and a
 * scenario whose second step fails with a script value that is markup.
 */
const HOSTILE = '<img src=x onerror=alert(1)>';
let dir: string;

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-run-html-'));
  fs.writeFileSync(path.join(dir, 'server.js'), "require('node:http').createServer((q, s) => s.end('ok')).listen(Number(process.env.PORT), '127.0.0.1');\nconsole.log('web up " + HOSTILE + "');\n");
  fs.writeFileSync(path.join(dir, 'topas.yaml'), 'name: htmlapp\nservices:\n  - name: web\n    version: "2.0.0"\n    command: ["node", "server.js"]\n    port: 8080\n    ready: { http: / }\n');
  fs.writeFileSync(
    path.join(dir, 'pay.lua'),
    ['step("login", function()', '  check("logged in", true)', 'end)', '', `step("pay ${HOSTILE}", function()`, '  expect(1):to_be(2)', 'end)', ''].join('\n'),
  );
});

after(() => fs.rmSync(dir, { recursive: true, force: true }));

function assertRunHtml(html: string): void {
  assert.match(html, /id="verdict">failed</);
  assert.match(html, /exit code <b id="exit-code">1<\/b>/);
  assert.match(html, /<tr class="step"><td>login<\/td><td class="s-passed">passed<\/td>/);
  assert.match(html, /<tr class="step"><td>pay &lt;img src=x onerror=alert\(1\)&gt;<\/td><td class="s-failed">failed<\/td>/);
  assert.match(html, /<span class="loc">pay\.lua:6<\/span>/);
  assert.match(html, /<td>web<\/td><td>service<\/td><td>2\.0\.0<\/td><td class="num">1<\/td>/);
  assert.match(html, /web up &lt;img src=x onerror=alert\(1\)&gt;/);
  assert.doesNotMatch(html, /<img/);
}

describe('html and github reporters on run and test schedule', () => {
  test('topas run --reporter html:FILE --reporter github', async () => {
    const summary = path.join(dir, 'summary.md');
    const r = await cli(['run', 'pay.lua', '--backend', 'local', '--reporter', 'html:out/run.html', '--reporter', 'github'], { cwd: dir, env: { ...process.env, GITHUB_STEP_SUMMARY: summary } });
    assert.equal(r.code, 1, r.stderr);
    assertRunHtml(fs.readFileSync(path.join(dir, 'out', 'run.html'), 'utf8'));
    assert.match(r.stdout, /^::error file=pay\.lua,line=6,title=pay\.lua › pay <img src=x onerror=alert\(1\)>::pay\.lua:6: expected 1 to be 2$/m);
    assert.match(fs.readFileSync(summary, 'utf8'), /\| pay\.lua \| failed \| [\d.]+m?s \| pay &lt;img src=x onerror=alert\(1\)&gt;: `pay\.lua:6` /);
  });

  test('topas test schedule --reporter html:FILE writes the report when the detached run ends', async () => {
    const s = await cli(['test', 'schedule', 'pay.lua', '--backend', 'local', '--reporter', 'html:sched.html'], { cwd: dir });
    assert.equal(s.code, 0, s.stderr);
    const id = s.stdout.trim();
    const record = await streamLogs({ io: captureIo({ cwd: dir }).io, id, follow: true, pollMs: 100, write: () => undefined });
    assert.equal(record.state, 'failed');
    // the detached run renders its reporters right after it writes the final record
    const file = path.join(dir, 'sched.html');
    for (let i = 0; i < 100 && !fs.existsSync(file); i++) await new Promise((r) => setTimeout(r, 100));
    await new Promise((r) => setTimeout(r, 200));
    assertRunHtml(fs.readFileSync(file, 'utf8'));
  });
});
