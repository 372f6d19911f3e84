import type { Io } from '../io';

/**
 * Ctrl-C handling for long commands: the first SIGINT/SIGTERM aborts what runs
 * and lets teardown finish; a second one forces (callers race `forced`).
 */
export class Interrupts {
  readonly controller = new AbortController();
  private count = 0;
  private readonly unsubscribe: () => void;
  private forceResolve!: () => void;
  /** Resolves on the second signal. */
  readonly forced: Promise<void> = new Promise((resolve) => (this.forceResolve = resolve));
  private readonly listeners: Array<() => void> = [];

  constructor(private readonly io: Io) {
    this.unsubscribe = io.onSignal((sig) => this.fire(sig));
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  get interrupted(): boolean {
    return this.count > 0;
  }

  /** Called once, on the first signal. */
  onInterrupt(fn: () => void): void {
    this.listeners.push(fn);
  }

  fire(sig: string): void {
    this.count++;
    if (this.count === 1) {
      this.io.stderr.write(`\n${sig}: stopping scenarios and tearing down (press Ctrl-C again to force)\n`);
      this.controller.abort(new Error(`interrupted by ${sig}`));
      for (const fn of this.listeners) {
        try {
          fn();
        } catch {
          // a listener failing must not stop teardown
        }
      }
    } else if (this.count === 2) {
      this.io.stderr.write(`${sig} again: forcing teardown\n`);
      this.forceResolve();
    }
  }

  dispose(): void {
    this.unsubscribe();
  }
}
