/**
 * Coalesces messages to one port into a single postMessage per turn of the
 * event loop: with thousands of short scenarios the fixed cost of a
 * postMessage (serialize, wake the other thread) dominates, and one batch of
 * N costs little more than one message.
 */
export class MessageBatcher<M> {
  private queue: M[] = [];
  private scheduled = false;

  constructor(private readonly send: (batch: M[]) => void) {}

  push(msg: M): void {
    this.queue.push(msg);
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => this.flush());
  }

  flush(): void {
    this.scheduled = false;
    if (this.queue.length === 0) return;
    const batch = this.queue;
    this.queue = [];
    this.send(batch);
  }
}
