import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { captureIo, cli, REPO_ROOT } from '../helpers/cli';
import { streamLogs } from '../../src/run/schedule-service';
import { RunRecordStore } from '../../src/run/run-record';
import type { LogLine } from '../../src/run/scenario-types';

/** A scratch folder with a copy of a fixture scenario, so run records stay out of the repo. */
function scratch(files: string[]): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-sched-'));
  for (const f of files) fs.copyFileSync(path.join(REPO_ROOT, f), path.join(dir, path.basename(f)));
  return dir;
}

describe('topas test schedule / logs / status', () => {
  test('schedule returns an id at once; logs --follow streams lines as they are written; status shows the end', async () => {
    const dir = scratch(['fixtures/cli/no-app/ticks.lua']);
    try {
      const s = await cli(['test', 'schedule', 'ticks.lua'], { cwd: dir });
      assert.equal(s.code, 0, s.stderr);
      const id = s.stdout.trim();
      assert.match(id, /^\d{8}-\d{6}-/);
      const st0 = await cli(['test', 'status', id, '--json'], { cwd: dir });
      assert.match(JSON.parse(st0.stdout).state, /Pending|Running/);

      const cap = captureIo({ cwd: dir });
      const arrivals: { line: LogLine; at: number }[] = [];
      const record = await streamLogs({ io: cap.io, id, follow: true, pollMs: 50, write: (line) => arrivals.push({ line, at: Date.now() }) });
      const ticks = arrivals.filter((a) => /tick \d/.test(a.line.message));
      assert.equal(ticks.length, 8);
      // streamed while running: the first tick arrived well before the last one was written
      assert.ok(ticks[7].at - ticks[0].at >= 1000, `ticks arrived ${ticks[7].at - ticks[0].at} ms apart`);
      assert.equal(record.state, 'passed');

      const st = await cli(['test', 'status', id, '--json'], { cwd: dir });
      const status = JSON.parse(st.stdout);
      assert.equal(status.state, 'Passed');
      assert.ok(status.durationMs > 1000);
      const list = await cli(['test', 'status'], { cwd: dir });
      assert.match(list.stdout, new RegExp(id));
      const logs = await cli(['test', 'logs', id], { cwd: dir });
      assert.match(logs.stdout, /tick 8/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('two schedules against the same app queue instead of colliding', async () => {
    const dir = scratch(['fixtures/cli/no-app/ticks.lua']);
    try {
      // an app whose only service is a tiny HTTP server, so the lock is per app
      fs.writeFileSync(
        path.join(dir, 'server.js'),
        "require('node:http').createServer((q, s) => s.end('ok')).listen(Number(process.env.PORT), '127.0.0.1');\n",
      );
      fs.writeFileSync(path.join(dir, 'topas.yaml'), 'name: queued\nservices:\n  - name: web\n    command: ["node", "server.js"]\n    port: 8080\n    ready: { http: / }\n');
      const a = await cli(['test', 'schedule', 'ticks.lua', '--backend', 'local'], { cwd: dir });
      const b = await cli(['test', 'schedule', 'ticks.lua', '--backend', 'local'], { cwd: dir });
      assert.equal(a.code, 0, a.stderr);
      assert.equal(b.code, 0, b.stderr);
      const ids = [a.stdout.trim(), b.stdout.trim()];
      const cap = captureIo({ cwd: dir });
      for (const id of ids) await streamLogs({ io: cap.io, id, follow: true, pollMs: 100, write: () => undefined });
      const store = new RunRecordStore(dir);
      const spans = ids.map((id) => {
        const lines = store.readLog(id);
        const up = lines.find((l) => /standing up/.test(l.message));
        const down = lines.find((l) => /tearing down/.test(l.message));
        assert.ok(up && down, `run ${id} has no start/teardown lines`);
        assert.equal(store.readRun(id).state, 'passed');
        return { from: up.ts, to: down.ts };
      });
      const [first, second] = spans.sort((x, y) => x.from - y.from);
      assert.ok(second.from >= first.to, 'the second run stood the app up while the first still held it');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
