import * as net from 'node:net';
import { STATUS_CODES } from 'node:http';
import { TopasError } from '../errors';
import { HttpRequestFramer, type FramerSink, type RequestHead } from './http-request-framer';
import { compilePathPattern, requestPath, type PathMatcher, type ShapeState } from './shape-state';

export type ProxyMode = 'tcp' | 'http';

export interface ProxyTarget {
  host: string;
  port: number;
}

export interface ShapingProxyOptions {
  /** service name (and replica/port), for stats and errors */
  name: string;
  listenHost?: string;
  /** 0 = any free port */
  listenPort?: number;
  /** `http` also frames HTTP/1.x requests so http_fault can answer single requests */
  mode: ProxyMode;
  /** Current upstreams; asked on every new connection (round-robin), so it follows scaling. */
  targets: () => ProxyTarget[];
  /** injectable for tests; defaults to Math.random */
  random?: () => number;
}

export interface ShapingProxyStats {
  name: string;
  mode: ProxyMode;
  address?: ProxyTarget;
  shape: ShapeState;
  activeConnections: number;
  totalConnections: number;
  /** reset by down or loss (on accept or later) */
  resetConnections: number;
  /** accepted while `timeout` was on and never connected upstream */
  heldConnections: number;
  /** upstream connect failures and no-target cases */
  upstreamErrors: number;
  bytesToServer: number;
  bytesToClient: number;
  /** http mode: requests seen / answered by an injected fault */
  httpRequests: number;
  faultedRequests: number;
  /** http mode: requests dropped by `loss` (their connection reset) */
  lostRequests: number;
}

// Above this many queued bytes in one direction the source is paused.
const QUEUE_HIGH_WATER_BYTES = 256 * 1024;
// Every upstream socket reads into this; each read is copied out at once.
const UPSTREAM_READ_BUFFER = Buffer.allocUnsafe(64 * 1024);
// Bandwidth is paced in slices worth this long so the rate stays smooth.
const BANDWIDTH_SLICE_MS = 20;

/**
 * An in-process TCP proxy in front of one service endpoint that applies a
 * ShapeState which can change at run time. Unshaped, each direction is a plain
 * socket-to-socket write with backpressure; shaping only adds a queue for the
 * directions that need one.
 */
export class ShapingProxy {
  readonly name: string;
  readonly mode: ProxyMode;
  private readonly listenHost: string;
  private readonly listenPort: number;
  private readonly targets: () => ProxyTarget[];
  readonly random: () => number;
  private server: net.Server | undefined;
  private address: ProxyTarget | undefined;
  private readonly connections = new Set<ProxiedConnection>();
  private nextTarget = 0;
  private closed = false;
  shape: ShapeState = {};
  pathMatcher: PathMatcher | undefined;
  readonly counters = {
    totalConnections: 0,
    resetConnections: 0,
    heldConnections: 0,
    upstreamErrors: 0,
    bytesToServer: 0,
    bytesToClient: 0,
    httpRequests: 0,
    faultedRequests: 0,
    lostRequests: 0,
  };

  constructor(opts: ShapingProxyOptions) {
    this.name = opts.name;
    this.mode = opts.mode;
    this.listenHost = opts.listenHost ?? '127.0.0.1';
    this.listenPort = opts.listenPort ?? 0;
    this.targets = opts.targets;
    this.random = opts.random ?? Math.random;
    if (opts.mode !== 'tcp' && opts.mode !== 'http') throw new TopasError('INTERNAL', `shaping proxy ${opts.name}: unknown mode "${String(opts.mode)}"`);
  }

  async start(): Promise<ProxyTarget> {
    if (this.server) throw new TopasError('INTERNAL', `shaping proxy ${this.name} already started`);
    if (this.closed) throw new TopasError('INTERNAL', `shaping proxy ${this.name} is closed`);
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: false, noDelay: true }, (socket) => this.accept(socket));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error) => reject(new TopasError('SUT_START_FAILED', `shaping proxy ${this.name}: cannot listen on ${this.listenHost}:${this.listenPort}: ${err.message}`, { cause: err }));
      server.once('error', onError);
      server.listen(this.listenPort, this.listenHost, () => {
        server.off('error', onError);
        resolve();
      });
    });
    // an accept error (EMFILE) must not crash the process
    server.on('error', () => undefined);
    const a = server.address() as net.AddressInfo;
    this.address = { host: this.listenHost, port: a.port };
    return { ...this.address };
  }

  /** Replace the whole shape; applies to new connections and, where it makes sense, to open ones. */
  setShape(shape: ShapeState): void {
    const matcher = shape.httpFault?.path !== undefined ? compilePathPattern(shape.httpFault.path, `${this.name}: http_fault path`) : undefined;
    const prev = this.shape;
    this.shape = { ...shape };
    this.pathMatcher = matcher;
    for (const c of [...this.connections]) c.reshape(prev, this.shape);
  }

  reset(): void {
    this.setShape({});
  }

  stats(): ShapingProxyStats {
    return {
      name: this.name,
      mode: this.mode,
      address: this.address ? { ...this.address } : undefined,
      shape: { ...this.shape },
      activeConnections: this.connections.size,
      ...this.counters,
    };
  }

  /** Stops listening and destroys every open connection. Idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    const server = this.server;
    for (const c of [...this.connections]) c.destroy();
    if (!server || !server.listening) return;
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** @internal */
  pickTarget(): ProxyTarget | undefined {
    const list = this.targets();
    if (list.length === 0) return undefined;
    const t = list[this.nextTarget % list.length];
    this.nextTarget = (this.nextTarget + 1) % 1_000_000_007;
    return t;
  }

  /** @internal one draw of `loss` */
  lost(): boolean {
    const loss = this.shape.loss;
    return loss !== undefined && this.random() < loss.probability;
  }

  /** @internal */
  forget(c: ProxiedConnection): void {
    this.connections.delete(c);
  }

  private accept(socket: net.Socket): void {
    if (this.closed) {
      socket.destroy();
      return;
    }
    this.counters.totalConnections++;
    socket.setNoDelay(true);
    const s = this.shape;
    // http mode draws loss per request (judge), tcp mode here and per request burst later
    if (s.down || (this.mode === 'tcp' && this.lost())) {
      this.counters.resetConnections++;
      socket.on('error', () => undefined);
      socket.resetAndDestroy();
      return;
    }
    const c = new ProxiedConnection(this, socket);
    this.connections.add(c);
    if (s.timeout) {
      this.counters.heldConnections++;
      c.held = true;
    } else c.connectUpstream();
  }
}

/** One direction of one connection: writes straight through, or via a paced queue. */
class Direction {
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
        this.nextFreeAt = Math.max(this.nextFreeAt, now) + (piece.length / bw.bytesPerSecond) * 1000;
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

class ProxiedConnection {
  upstream: net.Socket | undefined;
  readonly toServer: Direction;
  readonly toClient: Direction;
  private readonly framer: HttpRequestFramer | undefined;
  private readonly sink: FramerSink | undefined;
  /** accepted under `timeout`, no upstream yet */
  held = false;
  /** some bytes were dropped under `timeout` */
  swallowed = false;
  /**
   * tcp mode: the server answered since the client last sent, so the client's
   * next bytes start a new request; `loss` draws once per such request, so a
   * keep-alive connection is not immune after its first one.
   */
  private answered = false;
  private destroyed = false;

  constructor(
    readonly proxy: ShapingProxy,
    readonly client: net.Socket,
  ) {
    this.toServer = new Direction(this, false);
    this.toClient = new Direction(this, true);
    this.toServer.src = client;
    this.toClient.dst = client;
    if (proxy.mode === 'http') {
      this.framer = new HttpRequestFramer((head) => this.judge(head));
      this.sink = {
        forward: (bytes) => {
          if (!this.destroyed) this.toServer.push(bytes);
        },
        answer: (head, status) => this.answer(head, status),
      };
    }
    client.on('data', (chunk: Buffer) => {
      if (this.framer && !this.proxy.shape.timeout) this.framer.push(chunk, this.sink!);
      else {
        if (this.answered && !this.framer) {
          this.answered = false;
          if (this.proxy.lost()) {
            this.proxy.counters.resetConnections++;
            this.reset();
            return;
          }
        }
        this.toServer.push(chunk);
      }
    });
    client.on('end', () => {
      if (this.held) this.destroy();
      else this.toServer.endSource();
    });
    client.on('error', () => this.destroy());
    client.on('close', () => this.destroy());
  }

  connectUpstream(): void {
    this.held = false;
    const target = this.proxy.pickTarget();
    if (!target) {
      this.proxy.counters.upstreamErrors++;
      this.reset();
      return;
    }
    // upstream reads land in one shared buffer and are copied out: no stream
    // 'data' machinery per response (~10-15% of the relay's CPU)
    const up = net.connect({
      host: target.host,
      port: target.port,
      allowHalfOpen: true,
      noDelay: true,
      onread: {
        buffer: UPSTREAM_READ_BUFFER,
        callback: (n: number, buf: Uint8Array) => {
          if (!this.destroyed) {
            this.answered = true;
            this.toClient.push(Buffer.from(buf.subarray(0, n)));
          }
          return true;
        },
      },
    });
    this.upstream = up;
    this.toServer.dst = up;
    this.toClient.src = up;
    up.on('end', () => this.toClient.endSource());
    let connected = false;
    up.once('connect', () => {
      connected = true;
    });
    up.on('error', () => {
      if (!connected) this.proxy.counters.upstreamErrors++;
      // the client sees what a dead upstream would show it: a reset
      this.reset();
    });
    up.on('close', (hadError) => {
      if (hadError) this.reset();
      else this.toClient.endSource();
    });
    // bytes that arrived while this connection was held were swallowed, nothing to replay
    this.toServer.kick();
  }

  reshape(prev: ShapeState, next: ShapeState): void {
    if (this.destroyed) return;
    if (next.down) {
      this.proxy.counters.resetConnections++;
      this.reset();
      return;
    }
    if (prev.timeout && !next.timeout) {
      if (this.swallowed) {
        // part of the byte stream is lost: the only honest continuation is a reset
        this.reset();
        return;
      }
      if (this.held) {
        this.connectUpstream();
        return;
      }
    }
    this.toServer.kick();
    this.toClient.kick();
  }

  reset(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.proxy.forget(this);
    this.toServer.dispose();
    this.toClient.dispose();
    if (!this.client.destroyed) this.client.resetAndDestroy();
    this.upstream?.destroy();
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.proxy.forget(this);
    this.toServer.dispose();
    this.toClient.dispose();
    this.client.destroy();
    this.upstream?.destroy();
  }

  private judge(head: RequestHead): number | undefined {
    const proxy = this.proxy;
    proxy.counters.httpRequests++;
    if (proxy.lost()) {
      // the request is lost: its connection resets, as a lost connection would show it (also a keep-alive one)
      proxy.counters.resetConnections++;
      proxy.counters.lostRequests++;
      this.reset();
      return undefined;
    }
    const fault = proxy.shape.httpFault;
    if (!fault) return undefined;
    if (proxy.pathMatcher && !proxy.pathMatcher.test(requestPath(head.target))) return undefined;
    if (!(proxy.random() < fault.rate)) return undefined;
    proxy.counters.faultedRequests++;
    return fault.status;
  }

  private answer(head: RequestHead, status: number): void {
    this.toClient.push(faultResponse(head, status));
    if (!head.keepAlive) {
      // the client will not send more; the upstream connection has nothing left to do
      this.upstream?.removeAllListeners('close');
      this.upstream?.destroy();
      this.toClient.endSource();
    }
  }
}

function faultResponse(head: RequestHead, status: number): Buffer {
  const reason = STATUS_CODES[status] ?? 'Injected Fault';
  const noBody = status === 204 || status === 304;
  const body = noBody ? '' : `topas shape: injected ${status} ${reason}\n`;
  const lines = [`HTTP/1.1 ${status} ${reason}`, 'x-topas-shape: http_fault', `connection: ${head.keepAlive ? 'keep-alive' : 'close'}`];
  if (!noBody) lines.push('content-type: text/plain; charset=utf-8', `content-length: ${Buffer.byteLength(body)}`);
  return Buffer.from(`${lines.join('\r\n')}\r\n\r\n${head.method === 'HEAD' ? '' : body}`, 'latin1');
}
