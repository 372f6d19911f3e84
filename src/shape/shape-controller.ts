import { TopasError } from '../errors';
import { didYouMean } from '../spec/did-you-mean';
import type { ShapeCall } from './shape-calls';
import { applyShapeChange, compilePathPattern, describeShape, type ShapeChange, type ShapeState } from './shape-state';
import type { ShapingProxyStats } from './shaping-proxy';

/** What a shape is set on: a ShapingProxy, or a stand-in for one in a proxy host (setShape then settles later). */
export interface ShapeTarget {
  setShape(state: ShapeState): void | Promise<void>;
  stats(): ShapingProxyStats;
  close(): Promise<void>;
}

/** One shaping change, timestamped so reports and load time series can mark it. */
export interface ShapeHistoryEntry {
  /** epoch ms */
  ts: number;
  service: string;
  change: ShapeChange;
  /** the service's whole shape after the change */
  state: ShapeState;
  /** e.g. `latency 200ms, loss 5%` or `none` */
  description: string;
  /** set when the shape cannot reach all of the service's traffic (dependents that bypass the proxies) */
  note?: string;
}

export interface ShapeControllerOptions {
  /** service names that may be shaped even while they have no proxy (scaled to 0, not started yet) */
  services?: Iterable<string>;
  now?: () => number;
}

interface ServiceEntry {
  state: ShapeState;
  proxies: ShapeTarget[];
}

/**
 * The registry of shaping proxies: service name -> its proxies (one per replica
 * and port). A shape is per service: it is set on every proxy of the service,
 * including proxies registered later (a new replica inherits the current shape).
 * Lives on the main thread; workers reach it through RPC with ShapeCall values.
 */
export class ShapeController {
  private readonly entries = new Map<string, ServiceEntry>();
  private readonly log: ShapeHistoryEntry[] = [];
  private readonly listeners = new Set<(entry: ShapeHistoryEntry) => void>();
  private readonly now: () => number;
  /** service -> dependents that reach it directly, not through a shaping proxy */
  private readonly bypass = new Map<string, string[]>();
  private readonly pending = new Set<Promise<void>>();

  constructor(opts: ShapeControllerOptions = {}) {
    this.now = opts.now ?? Date.now;
    for (const s of opts.services ?? []) this.entry(s);
  }

  /** Make a service name known (shapeable) without a proxy yet. */
  declareService(service: string): void {
    this.entry(service);
  }

  /**
   * Record that these dependents reach the service directly (a SUT started by
   * `topas up` or with --keep: its services outlive this process, so they were
   * not pointed at its proxies). Shapes then say they reach scenario traffic only.
   */
  dependentsBypass(service: string, dependents: string[]): void {
    if (dependents.length) this.bypass.set(service, [...dependents]);
  }

  /** Add a proxy for a service; it takes on the service's current shape. */
  register(service: string, proxy: ShapeTarget): void {
    const e = this.entry(service);
    if (!e.proxies.includes(proxy)) e.proxies.push(proxy);
    this.track(proxy.setShape(e.state));
  }

  /** Remove a proxy (its replica went away); does not close it. */
  unregister(service: string, proxy: ShapeTarget): void {
    const e = this.entries.get(service);
    if (!e) return;
    e.proxies = e.proxies.filter((p) => p !== proxy);
  }

  services(): string[] {
    return [...this.entries.keys()];
  }

  proxies(service: string): readonly ShapeTarget[] {
    return [...(this.entries.get(service)?.proxies ?? [])];
  }

  state(service: string): ShapeState {
    return { ...this.known(service, 'state').state };
  }

  /** Apply one change to every proxy of the service; returns the new shape. */
  apply(service: string, change: ShapeChange): ShapeState {
    const e = this.known(service, change.kind);
    const next = applyShapeChange(e.state, change);
    if (next.httpFault?.path !== undefined) compilePathPattern(next.httpFault.path, `shape.http_fault(${service}) path`);
    e.state = next;
    for (const p of e.proxies) this.track(p.setShape(next));
    const entry: ShapeHistoryEntry = { ts: this.now(), service, change: { ...change }, state: { ...next }, description: describeShape(next) };
    const direct = this.bypass.get(service);
    if (direct && change.kind !== 'reset') {
      entry.note = `scenario traffic only: ${direct.join(', ')} reach${direct.length === 1 ? 'es' : ''} ${service} directly (this SUT was kept running by \`topas up\` or --keep on a backend without a proxy host, so its dependents were not pointed at shaping proxies)`;
    }
    this.log.push(entry);
    for (const l of this.listeners) {
      try {
        l({ ...entry, change: { ...entry.change }, state: { ...entry.state } });
      } catch {
        /* a listener's failure is its own */
      }
    }
    return { ...next };
  }

  /** Resolves once every shape set so far has reached every proxy (those in a proxy host answer later). */
  async settled(): Promise<void> {
    while (this.pending.size) {
      const batch = [...this.pending];
      this.pending.clear();
      const results = await Promise.allSettled(batch);
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw new TopasError('SCENARIO_FAILED', `shape: ${failed.reason instanceof Error ? failed.reason.message : String(failed.reason)}`);
    }
  }

  private track(r: void | Promise<void>): void {
    if (r instanceof Promise) {
      this.pending.add(r);
      // settled() reports the failure; nothing is left unhandled meanwhile
      r.catch(() => undefined);
    }
  }

  /** Called after every change (e.g. to mark a load time series). Returns unsubscribe. */
  onChange(listener: (entry: ShapeHistoryEntry) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  applyCall(call: ShapeCall): ShapeState {
    return this.apply(call.service, call.change);
  }

  reset(service: string): ShapeState {
    return this.apply(service, { kind: 'reset' });
  }

  /** Reset every service that has a shape (end of a scenario / run). Recorded in history. */
  resetAll(): void {
    for (const [service, e] of this.entries) if (Object.keys(e.state).length > 0) this.reset(service);
  }

  history(): ShapeHistoryEntry[] {
    return this.log.map((h) => ({ ...h, change: { ...h.change }, state: { ...h.state } }));
  }

  stats(): Record<string, ShapingProxyStats[]> {
    const out: Record<string, ShapingProxyStats[]> = {};
    for (const [service, e] of this.entries) out[service] = e.proxies.map((p) => p.stats());
    return out;
  }

  /** Close every registered proxy (all their connections) and forget them. */
  async close(): Promise<void> {
    const all = [...this.entries.values()].flatMap((e) => e.proxies);
    for (const e of this.entries.values()) e.proxies = [];
    await Promise.all(all.map((p) => p.close()));
  }

  private entry(service: string): ServiceEntry {
    let e = this.entries.get(service);
    if (!e) {
      e = { state: {}, proxies: [] };
      this.entries.set(service, e);
    }
    return e;
  }

  private known(service: string, fn: string): ServiceEntry {
    const e = this.entries.get(service);
    if (e) return e;
    const near = didYouMean(service, this.entries.keys());
    throw new TopasError('SCENARIO_FAILED', `shape.${fn}: unknown service "${service}"${near ? ` (did you mean "${near}"?)` : ''}`, {
      hint: this.entries.size ? `services: ${[...this.entries.keys()].join(', ')}` : 'no services are shaped by this run',
    });
  }
}

/** Tell the controller which dependents of each service bypass its proxies (from the spec's dependency graph). */
export function markDependentsBypass(controller: ShapeController, spec: { services: Array<{ name: string; dependsOn: string[] }> }): void {
  const dependents = new Map<string, string[]>();
  for (const s of spec.services) for (const d of s.dependsOn) (dependents.get(d) ?? dependents.set(d, []).get(d)!).push(s.name);
  for (const [service, list] of dependents) controller.dependentsBypass(service, list);
}

/** The log line of a shape change: `shape: api -> latency 200ms`, plus its note if any. */
export function shapeChangeLine(e: ShapeHistoryEntry): string {
  return `shape: ${e.service} -> ${e.description}${e.note ? ` (${e.note})` : ''}`;
}
