import type { Vu, VuCommandResult } from '../lua/vu-host';
import { ArrivalDispatcher, ArrivalSchedule, type DueIteration } from './schedule';
import { VuPool } from './vu-pool';
import { wallNowMs } from './wall-clock';

/** How long iterations still running at the end of the schedule may finish (k6's gracefulStop). */
export const GRACEFUL_STOP_MS = 30_000;
/**
 * While the load runs, VUs are made when an iteration is due and none is
 * free (the iteration waits for its VU), at most this long per event-loop
 * turn (at least one VU), so timers, stop messages and the metrics flush
 * still run; never past the end of the schedule, when the iterations still
 * waiting for a VU are dropped (k6 drops them at once).
 */
const CREATE_PER_TURN_MS = 10;

/**
 * The middle layer of a worker's LoadRunner: the iterations, started as the
 * executor says (constant-vus: each VU loops on its own; arrival rates: the
 * dispatcher's schedule), on VUs of the pool, which grows on the way.
 */
export abstract class IterationLoop extends VuPool {
  protected dispatcher?: ArrivalDispatcher;
  protected startMs = 0;
  protected timer?: NodeJS.Timeout;
  protected graceTimer?: NodeJS.Timeout;
  /** ms since the load start at which the schedule ends */
  private endMs = 0;
  protected aborting = false;
  protected busyVus = 0;

  abstract stop(abort: boolean): void;

  private relNow = (): number => wallNowMs() - this.startMs;

  protected begin(): void {
    this.timer = undefined;
    if (this.stopping) return this.maybeFinish();
    const ex = this.executor;
    const endMs = ex.executor === 'ramping-arrival-rate' ? ex.stages.reduce((n, s) => n + s.durationMs, 0) : ex.durationMs;
    this.endMs = endMs;
    this.graceTimer = setTimeout(() => this.stop(true), endMs + GRACEFUL_STOP_MS);
    if (ex.executor === 'constant-vus') {
      const k = { next: this.init.worker };
      for (let slot = 0; slot < this.vus.length; slot++) this.loopVu(slot, k);
      // VUs the prepare budget left unmade are made now, within the creation budget, until the end
      if (this.vus.length < this.targetVus) this.growConstant(k);
      this.timer = setTimeout(() => this.stop(false), endMs);
      return;
    }
    const schedule = new ArrivalSchedule(ex);
    this.dispatcher = new ArrivalDispatcher(schedule, {
      worker: this.init.worker,
      workers: this.init.workers,
      // the VUs made so far; the dispatcher grows the pool from there
      preAllocatedVus: Math.min(this.vus.length, this.init.maxVus),
      maxVus: this.init.maxVus,
      now: this.relNow,
    });
    this.tick();
  }

  protected growTimer?: NodeJS.Timeout;

  private growConstant(k: { next: number }): void {
    this.growTimer = undefined;
    if (this.stopping || this.relNow() >= this.endMs) return this.maybeFinish();
    const t0 = performance.now();
    let made = 0;
    while (this.vus.length < this.targetVus && (made === 0 || performance.now() - t0 < CREATE_PER_TURN_MS)) {
      if (this.heapFull()) break;
      made++;
      const slot = this.vus.length;
      this.fillSlot(slot, () => this.loopVu(slot, k));
    }
    // next turn; with the heap full, look again a little later, not in a busy loop
    if (this.vus.length < this.targetVus) this.growTimer = setTimeout(() => this.growConstant(k), made === 0 ? 10 : 0);
  }

  /** One constant-vus VU looping on its own; its two callbacks are made once, not per iteration. */
  private loopVu(slot: number, k: { next: number }): void {
    const W = this.init.workers;
    const endMs = this.endMs;
    let vu = this.vus[slot] as Vu;
    let t0 = 0;
    const next = (): void => {
      if (this.stopping || this.relNow() >= endMs) return this.maybeFinish();
      const n = k.next;
      k.next += W;
      this.busyVus++;
      this.inFlight++;
      t0 = performance.now();
      this.host.runIteration(vu, n, done);
    };
    const done = (r: VuCommandResult): void => {
      this.inFlight--;
      this.busyVus--;
      this.registry.recordIteration(performance.now() - t0, r.ok ? NO_OPTS : FAILED);
      if (!r.ok) {
        this.noteError(r.error);
        if (vu.state === 'dead') {
          return this.renew(slot, vu, (fresh) => {
            vu = fresh;
            next();
          });
        }
      }
      // an iteration that never waited would otherwise starve the event loop
      if (vu.asyncCalls > 0) next();
      else setImmediate(next);
    };
    next();
  }

  private tick = (): void => {
    this.timer = undefined;
    const d = this.dispatcher!;
    if (this.stopping) return;
    // with the heap full, an iteration that finds no free VU is dropped at once
    const due = d.poll(this.heapFull() ? 0 : Infinity);
    if (due.dropped.length) this.registry.recordDropped(due.dropped.length);
    for (const s of due.start) this.startDue(s);
    const next = d.nextDueMs();
    if (next === undefined) {
      this.stopping = true;
      this.maybeFinish();
      return;
    }
    this.timer = setTimeout(this.tick, Math.max(0, next - this.relNow()));
  };

  private startDue(s: DueIteration): void {
    const d = this.dispatcher!;
    const release = () => {
      // a VU that died (over its memory cap) makes way for a fresh one, made when its slot is next due
      const v = this.vus[s.vu];
      if (v !== undefined && !(v instanceof Promise) && v.state === 'dead') {
        this.vus[s.vu] = undefined;
        this.host.discardVu(v);
      }
      d.release(s.vu);
      this.maybeFinish();
    };
    const existing = this.vus[s.vu];
    if (existing && !(existing instanceof Promise)) {
      this.runOne(existing, s.k, release);
      return;
    }
    // the pool grows: the iteration waits for its VU, made in turn (it starts late by the wait)
    this.inFlight++;
    this.waiting.push({ s, release });
    if (!this.pumpScheduled) {
      this.pumpScheduled = true;
      setImmediate(this.pump);
    }
  }

  /** Iterations due that wait for their VU to be made, oldest first (read from waitingHead). */
  private waiting: Array<{ s: DueIteration; release: () => void }> = [];
  private waitingHead = 0;
  private pumpScheduled = false;

  /** Makes VUs for waiting iterations, CREATE_PER_TURN_MS per turn; at the end (or the heap full) the rest are dropped. */
  private pump = (): void => {
    this.pumpScheduled = false;
    const t0 = performance.now();
    let made = 0;
    while (this.waitingHead < this.waiting.length) {
      const w = this.waiting[this.waitingHead];
      if (this.aborting || this.relNow() >= this.endMs || this.heapFull()) {
        this.waitingHead++;
        this.inFlight--;
        this.registry.recordDropped(1);
        w.release();
        continue;
      }
      if (made > 0 && performance.now() - t0 >= CREATE_PER_TURN_MS) break;
      this.waitingHead++;
      made++;
      this.makeFor(w.s, w.release);
    }
    if (this.waitingHead >= this.waiting.length) {
      this.waiting = [];
      this.waitingHead = 0;
    } else {
      if (this.waitingHead > 1024) {
        this.waiting = this.waiting.slice(this.waitingHead);
        this.waitingHead = 0;
      }
      this.pumpScheduled = true;
      setImmediate(this.pump);
    }
  };

  /** Makes the VU of a waiting iteration, then runs it (inFlight already counts it). */
  private makeFor(s: DueIteration, release: () => void): void {
    const existing = this.vus[s.vu];
    if (existing && !(existing instanceof Promise)) {
      this.inFlight--;
      this.runOne(existing, s.k, release);
      return;
    }
    const making = existing ?? this.makeVu(s.vu);
    this.vus[s.vu] = making;
    making.then(
      (vu) => {
        this.inFlight--;
        this.vus[s.vu] = vu;
        // interrupted while it was made: the iteration never started
        if (this.aborting) {
          this.registry.recordDropped(1);
          release();
        } else this.runOne(vu, s.k, release);
      },
      (err: Error) => {
        this.inFlight--;
        this.vus[s.vu] = undefined;
        if (this.aborting) this.registry.recordDropped(1);
        else {
          this.noteError(`VU init failed: ${err.message}`);
          this.registry.recordIteration(0, { failed: true });
        }
        release();
      },
    );
  }

  private runOne(vu: Vu, n: number, then: (r: VuCommandResult, async: boolean) => void): void {
    this.inFlight++;
    const t0 = performance.now();
    this.host.runIteration(vu, n, (r) => {
      this.inFlight--;
      this.registry.recordIteration(performance.now() - t0, r.ok ? NO_OPTS : FAILED);
      if (!r.ok) this.noteError(r.error);
      then(r, vu.asyncCalls > 0);
    });
  }
}

const FAILED = Object.freeze({ failed: true });
const NO_OPTS = Object.freeze({});
