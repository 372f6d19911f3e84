import type * as net from 'node:net';
import type { ProxiedConnection } from './proxied-connection';

// Above this many queued bytes in one direction the source is paused.
const QUEUE_HIGH_WATER_BYTES = 256 * 1024;
// Bandwidth is paced in slices worth this long so the rate stays smooth.
const BANDWIDTH_SLICE_MS = 20;
const BANDWIDTH_CATCH_UP_MS = 100;

/** One direction of one connection: writes straight through, or via a paced queue. */
export class Direction {
  private readonly queue: Buffer[] = [];
  private readonly readyAt: number[] = [];
  private queuedBytes = 0;
  private waitingDrain = false;
  private sourcePaused = false;
  private sourceEnded = false;
  private endSent = false;
  private timer: NodeJS.Timeout | undefined;
  private nextFreeAt = 0;
  src: net.Socket | undefined;
  dst: net.Socket | undefined;

  constructor(
    private readonly conn: ProxiedConnection,
    private readonly toClient: boolean,
  ) {}

  push(buf: Buffer): void {
    const proxy = this.conn.proxy;
    const shape = proxy.shape;
    if (shape.timeout) {
      // never answered: the bytes are gone, so this connection cannot be resumed later
      this.conn.swallowed = true;
      return;
    }
    if (this.toClient) proxy.counters.bytesToClient += buf.length;
    else proxy.counters.bytesToServer += buf.length;
    const latency = this.toClient ? shape.latency : undefined;
    if (this.queue.length === 0 && !this.waitingDrain && !latency && !shape.bandwidth && this.dst) {
      this.write(buf);
      return;
    }
    let delayMs = 0;
    if (latency) {
      const jitter = latency.jitterMs ? (proxy.random() * 2 - 1) * latency.jitterMs : 0;
      delayMs = Math.max(0, latency.delayMs + jitter);
    }
    this.queue.push(buf);
    this.readyAt.push(performance.now() + delayMs);
    this.queuedBytes += buf.length;
    this.updateFlow();
    if (!this.timer) this.pump();
  }

  /** The source sent FIN (or nothing more will come): end the destination after the queue. */
  endSource(): void {
    this.sourceEnded = true;
    this.maybeEnd();
  }

  /** Re-evaluate after a shape change. */
  kick(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    this.pump();
  }

  dispose(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.queue.length = 0;
    this.readyAt.length = 0;
    this.queuedBytes = 0;
  }

  private write(buf: Buffer): void {
    const dst = this.dst!;
    if (dst.destroyed) return;
    if (!dst.write(buf)) {
      this.waitingDrain = true;
      this.updateFlow();
      dst.once('drain', this.onDrain);
    }
  }

  private readonly onDrain = (): void => {
    this.waitingDrain = false;
    this.updateFlow();
    if (!this.timer) this.pump();
  };

  private updateFlow(): void {
    const src = this.src;
    if (!src) return;
    const block = this.waitingDrain || this.queuedBytes > QUEUE_HIGH_WATER_BYTES;
    if (block && !this.sourcePaused) {
      this.sourcePaused = true;
      src.pause();
    } else if (!block && this.sourcePaused && this.queuedBytes <= QUEUE_HIGH_WATER_BYTES / 2) {
      this.sourcePaused = false;
      src.resume();
    }
  }

  private schedule(ms: number): void {
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.pump();
    }, Math.max(1, Math.ceil(ms)));
  }

  private pump(): void {
    const shape = this.conn.proxy.shape;
    // held while timed out; a later shape change kicks the queue again
    if (shape.timeout || !this.dst) return;
    while (this.queue.length > 0) {
      if (this.waitingDrain) return;
      const now = performance.now();
      if (this.readyAt[0] > now) {
        this.schedule(this.readyAt[0] - now);
        return;
      }
      let piece = this.queue[0];
      const bw = shape.bandwidth;
      if (bw) {
        if (this.nextFreeAt > now) {
          this.schedule(this.nextFreeAt - now);
          return;
        }
        const sliceBytes = Math.max(1, Math.floor((bw.bytesPerSecond * BANDWIDTH_SLICE_MS) / 1000));
        if (piece.length > sliceBytes) {
          this.queue[0] = piece.subarray(sliceBytes);
          piece = piece.subarray(0, sliceBytes);
        } else {
          this.queue.shift();
          this.readyAt.shift();
        }
        // A timer that fired up to BANDWIDTH_CATCH_UP_MS late does not cost the
        // rate (the next slices follow at once, a bounded burst); else a busy
        // machine's late timers would lower it. After longer (idle, or the
        // first slice) the pace starts again from now.
        const from = this.nextFreeAt >= now - BANDWIDTH_CATCH_UP_MS ? this.nextFreeAt : now;
        this.nextFreeAt = from + (piece.length / bw.bytesPerSecond) * 1000;
      } else {
        this.queue.shift();
        this.readyAt.shift();
      }
      this.queuedBytes -= piece.length;
      this.write(piece);
      this.updateFlow();
    }
    this.maybeEnd();
  }

  private maybeEnd(): void {
    if (!this.sourceEnded || this.endSent || this.queue.length > 0 || !this.dst) return;
    if (this.conn.proxy.shape.timeout) return;
    this.endSent = true;
    if (!this.dst.destroyed) this.dst.end();
  }
}
