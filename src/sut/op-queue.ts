/**
 * Per-service ordering of operations: a rollout, a scale, a heal of one
 * service run one after another; different services in parallel.
 */
export class OpQueue {
  private tail: Promise<unknown> = Promise.resolve();
  /** operations queued or running */
  busy = 0;

  run<T>(fn: () => Promise<T>): Promise<T> {
    this.busy++;
    const p = this.tail.then(fn);
    this.tail = p.catch(() => undefined);
    return p.finally(() => {
      this.busy--;
    });
  }

  /** Settles when what is queued now has run (never rejects). */
  idle(): Promise<void> {
    return this.tail.then(() => undefined);
  }
}
