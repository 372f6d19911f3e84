import { afterEach, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { TopasError } from '../../src/errors';
import type { SutState } from '../../src/backends/backend';
import { clearRegisteredSecrets, registerSecret } from '../../src/spec/secrets';
import { acquireAppLock } from '../../src/run/schedule-service';
import {
  RunRecordStore,
  createRunId,
  readStateFile,
  removeStateFile,
  stateFilePath,
  updateStateFile,
  writeFileAtomic,
  writeStateFile,
  type RunRecord,
} from '../../src/run/run-record';

let dir: string;

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-runs-'));
});
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
  clearRegisteredSecrets();
});

const record = (runId: string, over: Partial<RunRecord> = {}): RunRecord => ({
  runId,
  state: 'passed',
  startedAt: '2025-01-31T12:00:00.000Z',
  durationMs: 10,
  results: [],
  ...over,
});

describe('run ids', () => {
  test('sort by creation time, also within one millisecond and across the counter base36 rollover', () => {
    const t = Date.UTC(2025, 0, 31, 12, 5, 1, 123);
    const ids = [createRunId(t - 1000), ...Array.from({ length: 50 }, () => createRunId(t)), createRunId(t + 1)];
    assert.match(ids[0], /^20250131-120500-123-\d[0-9a-z]+-[0-9a-f]{6}$/);
    assert.deepEqual([...ids].sort(), ids);
    assert.equal(new Set(ids).size, ids.length);
  });
});

describe('RunRecordStore', () => {
  test('writeRun / readRun round trip; listRuns newest first; unknown run is FILE_NOT_FOUND', () => {
    const store = new RunRecordStore(dir);
    assert.deepEqual(store.listRuns(), []);
    const a = store.createRunId(Date.UTC(2025, 0, 1));
    const b = store.createRunId(Date.UTC(2025, 0, 2));
    store.writeRun(b, record(b, { state: 'running', results: undefined, durationMs: undefined }));
    store.writeRun(a, record(a, { app: 'shop' }));
    store.writeRun(b, record(b, { state: 'failed', extra: { targets: ['a.lua'] } }));
    assert.deepEqual(store.listRuns(), [b, a]);
    assert.deepEqual(store.readRun(a), record(a, { app: 'shop' }));
    assert.equal(store.readRun(b).state, 'failed');
    assert.deepEqual(store.readRun(b).extra, { targets: ['a.lua'] });
    assert.equal(fs.existsSync(path.join(dir, '.topas', 'runs', a, 'run.json')), true);
    assert.throws(() => store.readRun('20990101-000000-000-10-000000'), (e: unknown) => e instanceof TopasError && e.code === 'FILE_NOT_FOUND');
    assert.throws(() => store.readRun('../../etc'), (e: unknown) => e instanceof TopasError && e.code === 'INVALID_FLAGS');
  });

  test('atomic writes leave no temp files behind, also when the rename fails', () => {
    const store = new RunRecordStore(dir);
    const id = store.createRunId();
    for (let i = 0; i < 20; i++) store.writeRun(id, record(id, { durationMs: i }));
    assert.deepEqual(fs.readdirSync(store.runDir(id)), ['run.json']);
    assert.equal(store.readRun(id).durationMs, 19);

    // A folder where the file should go makes the rename fail after the temp file was written.
    const target = path.join(dir, 'blocked.json');
    fs.mkdirSync(target);
    fs.writeFileSync(path.join(target, 'keep'), 'x');
    assert.throws(() => writeFileAtomic(target, '{"a":1}'));
    assert.deepEqual(fs.readdirSync(dir).sort(), ['.topas', 'blocked.json']);
  });

  test('a reader in another process only ever sees a whole run.json', { timeout: 60_000 }, async () => {
    const store = new RunRecordStore(dir);
    const id = store.createRunId();
    const big = 'x'.repeat(256 * 1024);
    store.writeRun(id, record(id, { big, n: 0 }));
    const file = store.runPath(id);
    // The child reads as fast as it can while we rewrite; it reports any unparsable read.
    const reader = spawn(
      process.execPath,
      [
        '-e',
        `const fs=require('fs');let bad=0,reads=0;const end=Date.now()+60000;` +
          `JSON.parse(fs.readFileSync(${JSON.stringify(file)},'utf8'));process.stdout.write('ready\\n');` +
          `while(!fs.existsSync(${JSON.stringify(file + '.stop')})&&Date.now()<end){try{JSON.parse(fs.readFileSync(${JSON.stringify(file)},'utf8'));reads++}catch(e){bad++}}` +
          `process.stdout.write(JSON.stringify({bad,reads}))`,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let out = '';
    const ready = new Promise<void>((resolve) =>
      reader.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('ready\n')) resolve();
      }),
    );
    const exited = new Promise<number | null>((resolve) => reader.on('exit', resolve));
    await Promise.race([ready, exited]);
    try {
      for (let i = 1; i <= 40; i++) {
        store.writeRun(id, record(id, { big, n: i }));
        await new Promise((r) => setImmediate(r));
      }
    } finally {
      fs.writeFileSync(file + '.stop', '');
    }
    assert.equal(await exited, 0);
    const { bad, reads } = JSON.parse(out.slice(out.indexOf('ready\n') + 'ready\n'.length)) as { bad: number; reads: number };
    assert.equal(bad, 0);
    assert.ok(reads > 0);
    assert.equal(reader.exitCode, 0, 'reader process is gone');
  });

  test('appendLog appends masked NDJSON lines that never interleave, even from several processes', { timeout: 60_000 }, async () => {
    const store = new RunRecordStore(dir);
    const id = store.createRunId();
    registerSecret('hunter22');
    store.appendLog(id, { ts: 1, runId: id, source: 'topas', level: 'info', message: 'password is hunter22' });
    const long = 'y'.repeat(8000);
    const writers = [1, 2, 3].map((w) =>
      spawn(
        process.execPath,
        [
          '-e',
          `const {RunRecordStore}=require(${JSON.stringify(path.resolve(__dirname, '../../src/run/run-record.js'))});const s=new RunRecordStore(${JSON.stringify(dir)});for(let i=0;i<200;i++)s.appendLog(${JSON.stringify(id)},{ts:i,runId:${JSON.stringify(id)},source:'w${w}',level:'info',message:'${long}'+i});`,
        ],
        { stdio: 'inherit' },
      ),
    );
    const codes = await Promise.all(writers.map((p) => new Promise<number | null>((resolve) => p.on('exit', resolve))));
    assert.deepEqual(codes, [0, 0, 0]);
    const lines = fs.readFileSync(store.logPath(id), 'utf8').split('\n');
    assert.equal(lines.pop(), '');
    assert.equal(lines.length, 601);
    for (const l of lines) JSON.parse(l); // throws on an interleaved line
    const parsed = store.readLog(id);
    assert.equal(parsed[0].message, 'password is ***');
    for (const w of ['w1', 'w2', 'w3']) {
      const mine = parsed.filter((l) => l.source === w).map((l) => l.ts);
      assert.deepEqual(mine, Array.from({ length: 200 }, (_, i) => i), `${w}'s lines in order`);
    }
  });

  test('readLog skips a partly written last line', () => {
    const store = new RunRecordStore(dir);
    const id = store.createRunId();
    store.appendLog(id, { ts: 1, runId: id, source: 's', level: 'warn', message: 'one' });
    fs.appendFileSync(store.logPath(id), '{"ts":2,"runId"');
    assert.deepEqual(store.readLog(id), [{ ts: 1, runId: id, source: 's', level: 'warn', message: 'one' }]);
    assert.deepEqual(store.readLog('20990101-000000-000-10-000000'), []);
  });
});

describe('secrets and permissions at rest', () => {
  const SECRET = `tok&<>"' %/+9`;
  const modeOf = (p: string) => (fs.statSync(p).mode & 0o777).toString(8);

  test('writeRun masks every string and key, before and after encoding', () => {
    registerSecret(SECRET);
    const store = new RunRecordStore(dir);
    const id = store.createRunId();
    const step = { name: `call ${SECRET}`, state: 'failed', durationMs: 1, checks: [{ name: `check ${encodeURIComponent(SECRET)}`, passed: 1, failed: 0 }], error: { name: 'Error', message: `boom ${SECRET}`, stack: `Error: boom ${JSON.stringify(SECRET)}` } };
    store.writeRun(id, record(id, { results: [{ steps: [step] }] as never, load: { metrics: { [`http_reqs{name:/x?t=${encodeURIComponent(SECRET).toLowerCase()}}`]: 1 } } }));
    const text = fs.readFileSync(store.runPath(id), 'utf8');
    assert.doesNotMatch(text, /tok/);
    const back = store.readRun(id) as RunRecord & { results: Array<{ steps: Array<typeof step> }>; load: { metrics: Record<string, number> } };
    assert.equal(back.results[0].steps[0].name, 'call ***');
    assert.equal(back.results[0].steps[0].checks[0].name, 'check ***');
    assert.equal(back.results[0].steps[0].error.stack, 'Error: boom "***"');
    assert.deepEqual(Object.keys(back.load.metrics), ['http_reqs{name:/x?t=***}']);
  });

  test('appendLog masks every field of a line, debug lines too', () => {
    registerSecret(SECRET);
    const store = new RunRecordStore(dir);
    const id = store.createRunId();
    store.appendLog(id, { ts: 1, runId: id, source: `vu ${SECRET}`, level: 'debug', message: JSON.stringify({ kind: 'step-end', name: `step ${SECRET}` }) });
    const text = fs.readFileSync(store.logPath(id), 'utf8');
    assert.doesNotMatch(text, /tok/);
    assert.deepEqual(store.readLog(id)[0], { ts: 1, runId: id, source: 'vu ***', level: 'debug', message: '{"kind":"step-end","name":"step ***"}' });
  });

  test('everything under .topas/ is 0600, every folder 0700, also folders an older topas made 0755', () => {
    fs.mkdirSync(path.join(dir, '.topas', 'runs'), { recursive: true, mode: 0o755 });
    fs.chmodSync(path.join(dir, '.topas'), 0o755);
    fs.chmodSync(path.join(dir, '.topas', 'runs'), 0o755);
    fs.chmodSync(dir, 0o755);
    const store = new RunRecordStore(dir);
    const id = store.createRunId();
    store.writeRun(id, record(id));
    store.appendLog(id, { ts: 1, runId: id, source: 's', level: 'info', message: 'm' });
    writeStateFile(dir, { backend: 'local', runId: 'r1', app: 'shop', specFile: '/x/topas.yaml', startedAt: '2025-01-31T12:00:00.000Z', data: { superPassword: 'pw' } });
    assert.equal(modeOf(dir), '755', 'the app folder is the user\'s');
    for (const d of [path.join(dir, '.topas'), store.runsDir, store.runDir(id)]) assert.equal(modeOf(d), '700', d);
    for (const f of [store.runPath(id), store.logPath(id), stateFilePath(dir)]) assert.equal(modeOf(f), '600', f);
  });

  test('the app lock of queued runs is private too', async () => {
    const release = await acquireAppLock(dir, 'shop');
    try {
      assert.equal(modeOf(path.join(dir, '.topas')), '700');
      assert.equal(modeOf(path.join(dir, '.topas', 'locks')), '700');
      assert.equal(modeOf(path.join(dir, '.topas', 'locks', 'shop.lock')), '600');
    } finally {
      release();
    }
  });
});

describe('state file', () => {
  test('write, read, remove; missing reads as undefined', () => {
    assert.equal(readStateFile(dir), undefined);
    const state: SutState = { backend: 'local', runId: 'r1', app: 'shop', specFile: '/x/topas.yaml', startedAt: '2025-01-31T12:00:00.000Z', data: { pids: [1, 2] } };
    writeStateFile(dir, state);
    assert.equal(stateFilePath(dir), path.join(dir, '.topas', 'state.json'));
    assert.deepEqual(readStateFile(dir), state);
    assert.deepEqual(fs.readdirSync(path.join(dir, '.topas')), ['state.json']);
    removeStateFile(dir);
    removeStateFile(dir);
    assert.equal(readStateFile(dir), undefined);
  });

  test('an attached run updates the state only while it still names its SUT (a down in between wins)', () => {
    const state: SutState = { backend: 'local', runId: 'r1', app: 'shop', specFile: '/x/topas.yaml', startedAt: '2025-01-31T12:00:00.000Z', data: { n: 1 } };
    assert.equal(updateStateFile(dir, state), false, 'no state: nothing to update');
    assert.equal(readStateFile(dir), undefined);
    writeStateFile(dir, state);
    assert.equal(updateStateFile(dir, { ...state, data: { n: 2 } }), true);
    assert.deepEqual(readStateFile(dir)?.data, { n: 2 });
    writeStateFile(dir, { ...state, runId: 'r2' });
    assert.equal(updateStateFile(dir, { ...state, data: { n: 3 } }), false, 'another SUT is up now');
    assert.equal(readStateFile(dir)?.runId, 'r2');
  });
});
