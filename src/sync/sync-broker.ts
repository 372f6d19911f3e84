import { TopasError } from '../errors';

/**
 * Coordination between concurrent instances (barriers, signals, topics). It
 * lives on the main thread; instances in any worker reach it through rpc, so no
 * instance needs another's address. Every wait is bounded by a timeout, and a
 * wait that can no longer complete (an instance it needs has died) fails at
 * once, naming who is missing.
 */
export class SyncBroker {
  private readonly barriers = new Map<string, Barrier>();
  private readonly signals = new Map<string, { count: number; waiters: Set<Waiter> }>();
  private readonly topics = new Map<string, { values: unknown[]; waiters: Set<Waiter> }>();
  private readonly subscriptions = new Map<number, { topic: string; cursor: number }>();
  private readonly dead = new Map<string, string>();
  private nextSubscription = 1;
  private closed?: string;

  /** `instances`: every instance id taking part (for naming who never arrived). */
  constructor(private readonly instances: string[], private readonly defaultTimeoutMs = 60_000) {}

  barrier(instance: string, name: string, count: number, timeoutMs = this.defaultTimeoutMs): Promise<void> {
    this.assertOpen();
    if (!Number.isInteger(count) || count < 1) throw new TopasError('SCENARIO_FAILED', `sync.barrier("${name}"): count must be a positive integer, got ${count}`);
    let b = this.barriers.get(name);
    if (!b || b.done) {
      b = { name, count, arrived: new Set(), waiters: new Set(), done: false };
      this.barriers.set(name, b);
    }
    if (b.count !== count) throw new TopasError('SCENARIO_FAILED', `sync.barrier("${name}"): count ${count} differs from ${b.count} given by an earlier instance`);
    b.arrived.add(instance);
    if (b.arrived.size >= b.count) {
      b.done = true;
      for (const w of b.waiters) w.resolve(undefined);
      b.waiters.clear();
      return Promise.resolve();
    }
    const barrier = b;
    const failure = this.barrierImpossible(barrier);
    if (failure) return Promise.reject(failure);
    return this.wait(barrier.waiters, timeoutMs, () => {
      const missing = this.instances.filter((i) => !barrier.arrived.has(i));
      return new TopasError('SCENARIO_FAILED', `sync.barrier("${name}") timed out after ${timeoutMs} ms: ${barrier.arrived.size}/${count} arrived; never arrived: ${summarize(missing)}`);
    }).then(() => undefined);
  }

  signal(_instance: string, name: string): number {
    this.assertOpen();
    const s = this.signalEntry(name);
    s.count++;
    for (const w of [...s.waiters]) if (s.count >= (w.until ?? 0)) {
      s.waiters.delete(w);
      w.resolve(s.count);
    }
    return s.count;
  }

  waitSignal(_instance: string, name: string, count: number, timeoutMs = this.defaultTimeoutMs): Promise<number> {
    this.assertOpen();
    const s = this.signalEntry(name);
    if (s.count >= count) return Promise.resolve(s.count);
    return this.wait(s.waiters, timeoutMs, () => new TopasError('SCENARIO_FAILED', `sync.wait("${name}", ${count}) timed out after ${timeoutMs} ms at ${s.count} signal(s)`), count) as Promise<number>;
  }

  publish(_instance: string, topic: string, value: unknown): number {
    this.assertOpen();
    const t = this.topicEntry(topic);
    t.values.push(value);
    for (const w of t.waiters) w.resolve(undefined);
    t.waiters.clear();
    return t.values.length;
  }

  /** A subscription sees every value of the topic, past and future, in order. */
  subscribe(_instance: string, topic: string): number {
    this.assertOpen();
    this.topicEntry(topic);
    const id = this.nextSubscription++;
    this.subscriptions.set(id, { topic, cursor: 0 });
    return id;
  }

  async next(_instance: string, subscription: number, timeoutMs = this.defaultTimeoutMs): Promise<unknown> {
    this.assertOpen();
    const sub = this.subscriptions.get(subscription);
    if (!sub) throw new TopasError('SCENARIO_FAILED', `sync.next: unknown subscription ${subscription}`);
    const t = this.topicEntry(sub.topic);
    const deadline = Date.now() + timeoutMs;
    while (sub.cursor >= t.values.length) {
      const left = deadline - Date.now();
      if (left <= 0) throw new TopasError('SCENARIO_FAILED', `sync.next("${sub.topic}") timed out after ${timeoutMs} ms with no new value`);
      await this.wait(t.waiters, left, () => new TopasError('SCENARIO_FAILED', `sync.next("${sub.topic}") timed out after ${timeoutMs} ms with no new value`));
    }
    return t.values[sub.cursor++];
  }

  /**
   * An instance ended (failed, or passed without reaching a barrier). Barriers
   * that can no longer fill fail now instead of at their timeout.
   */
  instanceEnded(instance: string, reason: string): void {
    this.dead.set(instance, reason);
    for (const b of this.barriers.values()) {
      if (b.done || b.waiters.size === 0) continue;
      const failure = this.barrierImpossible(b);
      if (failure) {
        for (const w of b.waiters) w.reject(failure);
        b.waiters.clear();
      }
    }
  }

  /** Fails every pending wait (the run is stopping). */
  close(reason: string): void {
    this.closed = reason;
    const err = new TopasError('INTERRUPTED', `sync: ${reason}`);
    for (const b of this.barriers.values()) {
      for (const w of b.waiters) w.reject(err);
      b.waiters.clear();
    }
    for (const s of this.signals.values()) {
      for (const w of s.waiters) w.reject(err);
      s.waiters.clear();
    }
    for (const t of this.topics.values()) {
      for (const w of t.waiters) w.reject(err);
      t.waiters.clear();
    }
  }

  private barrierImpossible(b: Barrier): TopasError | undefined {
    const alive = this.instances.filter((i) => !this.dead.has(i) || b.arrived.has(i));
    if (alive.length >= b.count) return undefined;
    const deadMissing = this.instances.filter((i) => this.dead.has(i) && !b.arrived.has(i));
    return new TopasError(
      'SCENARIO_FAILED',
      `sync.barrier("${b.name}") cannot complete: ${b.arrived.size}/${b.count} arrived and ${summarize(deadMissing.map((i) => `${i} (${this.dead.get(i)})`))} ended before arriving`,
    );
  }

  private signalEntry(name: string) {
    let s = this.signals.get(name);
    if (!s) this.signals.set(name, (s = { count: 0, waiters: new Set() }));
    return s;
  }

  private topicEntry(topic: string) {
    let t = this.topics.get(topic);
    if (!t) this.topics.set(topic, (t = { values: [], waiters: new Set() }));
    return t;
  }

  private wait(set: Set<Waiter>, timeoutMs: number, onTimeout: () => Error, until?: number): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const w: Waiter = {
        until,
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      const timer = setTimeout(() => {
        set.delete(w);
        reject(onTimeout());
      }, timeoutMs);
      set.add(w);
    });
  }

  private assertOpen(): void {
    if (this.closed) throw new TopasError('INTERRUPTED', `sync: ${this.closed}`);
  }
}

interface Waiter {
  until?: number;
  resolve(v: unknown): void;
  reject(e: Error): void;
}

interface Barrier {
  name: string;
  count: number;
  arrived: Set<string>;
  waiters: Set<Waiter>;
  done: boolean;
}

function summarize(ids: string[], max = 10): string {
  if (ids.length === 0) return 'none';
  return ids.length <= max ? ids.join(', ') : `${ids.slice(0, max).join(', ')} and ${ids.length - max} more`;
}
