import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { isKeptApp, pidNamespace } from '../../src/backends/ownership';
import { LABEL, ownerGone, proxyHostOf, runLabels } from '../../src/backends/docker/labels';
import { isAlive, processStartTicks } from '../../src/backends/local/processes';
import { readRunRecords, registryFile, sweepRuns, writeRunRecord, type RunRecord } from '../../src/backends/local/run-registry';

const linux = process.platform === 'linux';

describe('who owns a run', () => {
  test('a docker object belongs to a live owner only with the same pid AND start time, in our pid namespace', { skip: !linux }, () => {
    const mine = runLabels('app', 'r1', '/x/topas.yaml');
    assert.equal(mine[LABEL.spec], '/x/topas.yaml');
    assert.equal(ownerGone(mine), false, 'this process is alive');
    // the pid lives, but it is another process now (recycled): the owner is gone
    assert.equal(ownerGone({ ...mine, [LABEL.ownerStart]: String(Number(mine[LABEL.ownerStart]) - 1) }), true);
    // no owner label at all (an older topas made it): a leftover
    assert.equal(ownerGone({ [LABEL.app]: 'app', [LABEL.run]: 'r1' }), true);
    // an owner in another pid namespace cannot be judged from here: never gone
    assert.equal(ownerGone({ ...mine, [LABEL.ownerPid]: '999999', [LABEL.ownerPidns]: 'pid:[1]' }), false);
    assert.equal(ownerGone({ ...mine, [LABEL.ownerPid]: '999999', [LABEL.ownerPidns]: pidNamespace()! }), true);
  });

  test('a proxy host label gives pid and start time; from another pid namespace, nothing', () => {
    const l = runLabels('app', 'r1', '/x/topas.yaml', { pid: 1234, startTicks: 99 });
    assert.deepEqual(proxyHostOf(l), { pid: 1234, startTicks: 99 });
    assert.equal(proxyHostOf({ ...l, [LABEL.ownerPidns]: 'pid:[1]' }), undefined);
    assert.equal(proxyHostOf(runLabels('app', 'r1')), undefined);
  });

  test('the same app is the same name and the same spec file (symlinks resolved)', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-same-app-'));
    try {
      fs.writeFileSync(path.join(dir, 'topas.yaml'), 'name: a\n');
      fs.symlinkSync(dir, `${dir}-link`);
      const spec = path.join(dir, 'topas.yaml');
      assert.equal(isKeptApp({ app: 'a', specFile: spec }, 'a', spec), true);
      assert.equal(isKeptApp({ app: 'a', specFile: path.join(`${dir}-link`, 'topas.yaml') }, 'a', spec), true);
      assert.equal(isKeptApp({ app: 'a', specFile: spec }, 'b', spec), false, 'another name');
      assert.equal(isKeptApp({ app: 'a', specFile: spec }, 'a', '/elsewhere/topas.yaml'), false, 'the same name in another folder');
      assert.equal(isKeptApp({ app: 'a', specFile: spec }, 'a', undefined), false, 'a run without a recorded spec');
      assert.equal(isKeptApp(undefined, 'a', spec), false);
    } finally {
      fs.rmSync(`${dir}-link`, { force: true });
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('local run registry: sweeps', { skip: !linux }, () => {
  const savedTmp = process.env.TMPDIR;
  let tmp: string;
  const children: number[] = [];

  before(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-sweep-unit-'));
    process.env.TMPDIR = tmp; // the registry lives under os.tmpdir()
  });
  after(() => {
    for (const pid of children) {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    process.env.TMPDIR = savedTmp;
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  /** A process of "the run": its own group, as the local backend starts services. */
  function service(): { pid: number; startTicks?: number } {
    const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { detached: true, stdio: 'ignore' });
    child.unref();
    children.push(child.pid!);
    return { pid: child.pid!, startTicks: processStartTicks(child.pid!) };
  }

  function record(runId: string, over: Partial<RunRecord>): RunRecord {
    const workDir = fs.mkdtempSync(path.join(tmp, `${runId}-`));
    const rec: RunRecord = { runId, app: 'app', specFile: '/a/topas.yaml', owner: { pid: process.pid, startTicks: processStartTicks(process.pid) }, detached: false, workDir, extraDirs: [], processes: [service()], ...over };
    writeRunRecord(rec);
    return rec;
  }

  test('all: a live owner keeps its run, a recycled pid does not; kept SUTs go only with their own app', async () => {
    const live = record('live', {});
    const recycled = record('recycled', { owner: { pid: process.pid, startTicks: (processStartTicks(process.pid) ?? 0) - 1 } });
    const keptHere = record('kept-here', { detached: true, owner: { pid: 999_999 } });
    const keptSameName = record('kept-same-name', { detached: true, owner: { pid: 999_999 }, specFile: '/b/topas.yaml' });
    const lines: string[] = [];

    const first = await sweepRuns({ all: true, log: (l) => lines.push(l) });
    assert.equal(first.removed.length, 1, first.removed.join('\n'));
    assert.match(first.removed[0], /local run recycled \(app app, owner pid \d+ gone\): 1 process group/);
    assert.equal(isAlive(recycled.processes[0]), false);
    assert.equal(fs.existsSync(recycled.workDir), false);
    for (const r of [live, keptHere, keptSameName]) assert.equal(isAlive(r.processes[0]), true, `${r.runId} was touched`);

    const second = await sweepRuns({ all: true, kept: { app: 'app', specFile: '/a/topas.yaml' } });
    assert.deepEqual(
      second.removed.map((r) => r.split(' ')[2]),
      ['kept-here'],
    );
    assert.equal(isAlive(keptHere.processes[0]), false);
    assert.equal(isAlive(keptSameName.processes[0]), true, 'the same name from another folder stays');
    assert.equal(isAlive(live.processes[0]), true);
    assert.deepEqual(readRunRecords().map((r) => r.runId).sort(), ['kept-same-name', 'live']);
  });

  test('kept stays kept when a later process (one that attached) rewrites the record', () => {
    const rec = record('kept-rewritten', { detached: true });
    writeRunRecord({ ...rec, detached: false, specFile: undefined, owner: { pid: 999_999 } });
    const again = JSON.parse(fs.readFileSync(registryFile('kept-rewritten'), 'utf8')) as RunRecord;
    assert.equal(again.detached, true);
    assert.equal(again.specFile, '/a/topas.yaml');
  });
});
