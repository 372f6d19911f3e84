import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { captureIo } from '../helpers/cli';
import { runScenarios } from '../../src/run/run-service';

test('--metrics-port serves Prometheus metrics during a batch; the queue depth falls to 0', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-metrics-'));
  try {
    for (let i = 1; i <= 12; i++) fs.writeFileSync(path.join(dir, `s${String(i).padStart(2, '0')}.lua`), 'sleep("150ms")\ncheck("ok", true)\n');
    const cap = captureIo({ cwd: dir });
    const depths: number[] = [];
    let polling: Promise<void> | undefined;
    let stop = false;
    const outcome = await runScenarios({
      io: cap.io,
      targets: ['*.lua'],
      backend: 'auto',
      parallel: 3,
      timeoutMs: 30_000,
      reporters: [{ name: 'json' }],
      env: {},
      keep: false,
      metricsPort: 0,
      onMetricsServer: (port) => {
        polling = (async () => {
          for (let i = 0; i < 400 && !stop; i++) {
            try {
              const body = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
              const m = body.match(/^topas_queue_depth (\d+)/m);
              if (m) depths.push(Number(m[1]));
              assert.match(body, /topas_active_runners/);
              assert.match(body, /topas_test_duration_seconds_bucket/);
            } catch {
              // the server closes when the batch ends
              break;
            }
            await new Promise((r) => setTimeout(r, 40));
          }
        })();
      },
    });
    stop = true;
    await polling;
    assert.equal(outcome.exitCode, 0, cap.stderr);
    assert.ok(depths.length >= 3, `polled ${depths.length} times`);
    assert.ok(Math.max(...depths) >= 6, `max queue depth seen ${Math.max(...depths)}`);
    assert.equal(depths[depths.length - 1], 0);
    // falling: never rises during the batch
    for (let i = 1; i < depths.length; i++) assert.ok(depths[i] <= depths[i - 1], `queue depth rose: ${depths.join(',')}`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
