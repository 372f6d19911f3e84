import * as fs from 'node:fs';
import * as path from 'node:path';
import { startWorker, type Spread, type WorkerTransport } from '../workers/transport';
import { workerProcessEnv } from '../workers/worker-env';
import { MessageBatcher } from './message-batcher';
import type { EndpointMap } from '../backends/backend';
import { serializeError, type SerializedError } from '../errors';
import type { CheckTally, LogLine, RunState, ScenarioEvent, ScenarioResult, ScenarioTask, StepResult } from './scenario-types';
import type { FromWorker, ToWorker } from './worker-protocol';

export interface ScenarioPoolOptions {
  workers: number;
  /** where the workers run: threads of this process (default) or processes of this machine */
  spread?: Spread;
  /** serves `rpc-call`s (sut.*) from scenarios */
  rpc: (runId: string, method: string, args: unknown[]) => Promise<unknown>;
  onLog: (line: LogLine) => void;
  onEvent: (runId: string, ev: ScenarioEvent) => void;
}

/** How long a worker may overrun a deadline or a cancel before it is terminated. */
const GRACE_MS = 2000;

interface PendingRun {
  task: ScenarioTask;
  startedAt: Date;
  resolve: (r: ScenarioResult) => void;
  lastResort?: NodeJS.Timeout;
  /** why `cancel` stopped it, put into the result's error */
  cancelledBecause?: string;
  /** what its events reported so far: kept if the worker dies before the result comes */
  progress: Progress;
}

interface Progress {
  steps: StepResult[];
  open: Array<{ name: string; startedMs: number; checks: Map<string, CheckTally> }>;
  checks: Map<string, CheckTally>;
}

interface Slot {
  id: number;
  worker: WorkerTransport<ToWorker, FromWorker>;
  runs: Map<string, PendingRun>;
  gone: boolean;
  outbox: MessageBatcher<ToWorker>;
}

/**
 * Worker threads hosting Lua engines. A worker runs many scenarios at once
 * (coroutines), so `run` never queues: it picks the least loaded worker. The
 * main thread keeps the last word on time: a worker that overruns a deadline
 * by GRACE_MS is terminated, its runs fail, and a fresh worker takes its place.
 */
export class ScenarioPool {
  private readonly slots: Slot[] = [];
  private endpoints: EndpointMap | undefined;
  private closed = false;
  private nextSlotId = 1;
  private readonly workerFile = path.join(__dirname, 'scenario-worker.js');
  private readonly sources = new SourceCache();

  constructor(private readonly opts: ScenarioPoolOptions) {
    const n = Math.max(1, Math.floor(opts.workers));
    for (let i = 0; i < n; i++) this.slots.push(this.spawn());
  }

  run(task: ScenarioTask): Promise<ScenarioResult> {
    if (this.closed) return Promise.resolve(syntheticResult(task, new Date(), 'interrupted', { name: 'InterruptedError', code: 'INTERRUPTED', message: `${task.name} was not started: the scenario pool is closed` }));
    const slot = this.slots.reduce((best, s) => (s.runs.size < best.runs.size ? s : best));
    let t: ScenarioTask = this.endpoints ? { ...task, endpoints: this.endpoints } : task;
    // a worker process gets the script's text, not a path to read (threads read it through the engine's cache)
    if (this.opts.spread === 'processes' && t.source === undefined) {
      try {
        t = { ...t, source: this.sources.read(t.file) };
      } catch {
        // unreadable: the worker reports it as the engine always has
      }
    }
    return new Promise<ScenarioResult>((resolve) => {
      const pending: PendingRun = { task: t, startedAt: new Date(), resolve, progress: { steps: [], open: [], checks: new Map() } };
      slot.runs.set(t.runId, pending);
      if (t.timeoutMs > 0 && Number.isFinite(t.timeoutMs)) {
        pending.lastResort = setTimeout(() => this.overrun(slot, t.runId, 'timedOut'), t.timeoutMs + GRACE_MS);
      }
      this.post(slot, { type: 'run', task: t });
    });
  }

  setEndpoints(map: EndpointMap): void {
    this.endpoints = map;
    for (const s of this.slots) this.post(s, { type: 'endpoints', endpoints: map });
  }

  /** Stops every running scenario; each resolves as 'interrupted' ('timedOut' when reason is 'timeout'). */
  cancelAll(reason: 'interrupt' | 'timeout'): void {
    const state: RunState = reason === 'timeout' ? 'timedOut' : 'interrupted';
    for (const slot of this.slots) {
      for (const [runId, run] of slot.runs) {
        this.post(slot, { type: 'cancel', runId, reason });
        if (run.lastResort) clearTimeout(run.lastResort);
        run.lastResort = setTimeout(() => this.overrun(slot, runId, state), GRACE_MS);
      }
    }
  }

  /** Interrupts some runs (e.g. the other instances of a failed playbook unit); `why` ends up in their results. */
  cancel(runIds: string[], why: string): void {
    const wanted = new Set(runIds);
    for (const slot of this.slots) {
      for (const [runId, run] of slot.runs) {
        if (!wanted.has(runId) || run.cancelledBecause !== undefined) continue;
        run.cancelledBecause = why;
        this.post(slot, { type: 'cancel', runId, reason: 'interrupt' });
        if (run.lastResort) clearTimeout(run.lastResort);
        run.lastResort = setTimeout(() => this.overrun(slot, runId, 'interrupted'), GRACE_MS);
      }
    }
  }

  /** How the transport names each worker now ("process 1234", "thread 2"). */
  get workerLabels(): string[] {
    return this.slots.map((s) => s.worker.label);
  }

  /** Number of scenarios running now. */
  get running(): number {
    return this.slots.reduce((n, s) => n + s.runs.size, 0);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const slots = this.slots.splice(0);
    await Promise.all(
      slots.map(async (slot) => {
        this.failAll(slot, 'interrupted', { name: 'InterruptedError', code: 'INTERRUPTED', message: 'the scenario pool was closed while this scenario ran' });
        if (slot.gone) return;
        slot.gone = true;
        slot.outbox.flush();
        await slot.worker.stop({ shutdown: { type: 'shutdown' }, graceMs: GRACE_MS });
      }),
    );
  }

  // ------------------------------------------------------------------ internals

  private spawn(): Slot {
    const worker = startWorker<ToWorker, FromWorker>(this.opts.spread ?? 'threads', { entry: this.workerFile, env: workerProcessEnv() });
    const slot: Slot = {
      id: this.nextSlotId++,
      worker,
      runs: new Map(),
      gone: false,
      outbox: new MessageBatcher<ToWorker>((messages) => this.send(slot, messages.length === 1 ? messages[0] : { type: 'batch', messages })),
    };
    worker.on((ev) => {
      if (ev.type === 'message') this.onMessage(slot, ev.message);
      else if (ev.type === 'error') this.crashed(slot, `worker crashed: ${ev.error.message}`);
      else if (!slot.gone) this.crashed(slot, `worker exited unexpectedly (${ev.signal ? `signal ${ev.signal}` : `code ${ev.code}`})`);
    });
    if (this.endpoints) this.postRaw(slot, { type: 'endpoints', endpoints: this.endpoints });
    return slot;
  }

  private post(slot: Slot, msg: ToWorker): void {
    if (!slot.gone) this.postRaw(slot, msg);
  }

  private postRaw(slot: Slot, msg: ToWorker): void {
    // shutdown must not wait behind a turn of the loop
    if (msg.type === 'shutdown') {
      slot.outbox.flush();
      this.send(slot, msg);
    } else slot.outbox.push(msg);
  }

  private send(slot: Slot, msg: ToWorker): void {
    // once the worker is gone this is nothing: its runs are failed by the exit handler
    slot.worker.send(msg);
  }

  private onMessage(slot: Slot, msg: FromWorker): void {
    switch (msg.type) {
      case 'batch':
        for (const m of msg.messages) this.onMessage(slot, m);
        break;
      case 'ready':
        break;
      case 'log':
        this.opts.onLog(msg.line);
        break;
      case 'event': {
        const run = slot.runs.get(msg.runId);
        if (!run) break;
        track(run.progress, msg.event);
        this.opts.onEvent(msg.runId, msg.event);
        break;
      }
      case 'rpc-call':
        this.opts.rpc(msg.runId, msg.method, msg.args).then(
          (value) => this.post(slot, { type: 'rpc-result', callId: msg.callId, ok: true, value }),
          (err) => this.post(slot, { type: 'rpc-result', callId: msg.callId, ok: false, error: serializeError(err) }),
        );
        break;
      case 'done': {
        const run = slot.runs.get(msg.runId);
        if (!run) break;
        slot.runs.delete(msg.runId);
        if (run.lastResort) clearTimeout(run.lastResort);
        const { task } = run;
        // the worker leaves out what the task says (worker-protocol.ts DoneResult)
        const result: ScenarioResult = { runId: task.runId, name: task.name, file: task.file, instance: task.instance, ...msg.result };
        if (run.cancelledBecause !== undefined && result.state === 'interrupted' && result.error) {
          result.error = { ...result.error, message: `${result.error.message}: ${run.cancelledBecause}` };
        }
        run.resolve(result);
        break;
      }
      case 'fatal':
        this.crashed(slot, `worker failed: ${msg.error.message}`);
        break;
    }
  }

  /** The worker did not stop a run in time: terminate it, fail its runs, replace it. */
  private overrun(slot: Slot, runId: string, state: RunState): void {
    const run = slot.runs.get(runId);
    if (!run || slot.gone) return;
    const what = state === 'timedOut' ? `timed out after ${run.task.timeoutMs}ms` : 'was interrupted';
    this.replace(slot, state, {
      name: state === 'timedOut' ? 'TimeoutError' : 'InterruptedError',
      code: state === 'timedOut' ? 'TIMEOUT' : 'INTERRUPTED',
      message: `${run.task.name} ${what} and its worker did not stop it within ${GRACE_MS}ms; the worker was terminated`,
    });
  }

  private crashed(slot: Slot, message: string): void {
    if (slot.gone) return;
    // no JS stack: it would print with the scenario's failure, and says nothing about the scenario
    const n = slot.runs.size;
    this.replace(slot, 'error', {
      name: 'WorkerError',
      message: `the worker thread running this scenario stopped (${message})${n > 1 ? `; the ${n} scenarios it ran were stopped with it` : ''}`,
    });
  }

  private replace(slot: Slot, state: RunState, error: SerializedError): void {
    slot.gone = true;
    this.failAll(slot, state, error);
    void slot.worker.stop();
    const i = this.slots.indexOf(slot);
    if (i >= 0 && !this.closed) this.slots[i] = this.spawn();
  }

  private failAll(slot: Slot, state: RunState, error: SerializedError): void {
    for (const run of slot.runs.values()) {
      if (run.lastResort) clearTimeout(run.lastResort);
      run.resolve(syntheticResult(run.task, run.startedAt, state, error, run.progress));
    }
    slot.runs.clear();
  }
}

function tally(map: Map<string, CheckTally>, name: string, ok: boolean): void {
  let t = map.get(name);
  if (!t) map.set(name, (t = { name, passed: 0, failed: 0 }));
  if (ok) t.passed++;
  else t.failed++;
}

/** Rebuilds a scenario's steps and checks from its events, as the engine records them. */
function track(p: Progress, ev: ScenarioEvent): void {
  if (ev.kind === 'check') {
    tally(p.checks, ev.name, ev.ok);
    for (const s of p.open) tally(s.checks, ev.name, ev.ok);
  } else if (ev.kind === 'step-start') {
    p.open.push({ name: ev.name, startedMs: ev.ts, checks: new Map() });
  } else if (ev.state === 'skipped' && p.open[p.open.length - 1]?.name !== ev.name) {
    p.steps.push({ name: ev.name, state: 'skipped', durationMs: 0, checks: [] });
  } else {
    const open = p.open.pop();
    p.steps.push({ name: ev.name, state: ev.state, durationMs: open ? ev.ts - open.startedMs : 0, checks: open ? [...open.checks.values()] : [], ...(ev.error ? { error: ev.error } : {}) });
  }
}

function syntheticResult(task: ScenarioTask, startedAt: Date, state: RunState, error: SerializedError, progress?: Progress): ScenarioResult {
  const steps = progress ? [...progress.steps] : [];
  // steps open when it stopped failed with it, as the engine reports them
  if (progress) for (const s of [...progress.open].reverse()) steps.push({ name: s.name, state: 'failed', durationMs: Date.now() - s.startedMs, checks: [...s.checks.values()], error });
  return {
    runId: task.runId,
    name: task.name,
    file: task.file,
    instance: task.instance,
    state,
    startedAt: startedAt.toISOString(),
    durationMs: Date.now() - startedAt.getTime(),
    steps,
    checks: progress ? [...progress.checks.values()] : [],
    error,
  };
}

/** Script texts by path, read again when the file changed (a run of many instances reads one file once). */
class SourceCache {
  private readonly byFile = new Map<string, { mtimeMs: number; source: string }>();

  read(file: string): string {
    const mtimeMs = fs.statSync(file).mtimeMs;
    const hit = this.byFile.get(file);
    if (hit && hit.mtimeMs === mtimeMs) return hit.source;
    const source = fs.readFileSync(file, 'utf8');
    this.byFile.set(file, { mtimeMs, source });
    return source;
  }
}
