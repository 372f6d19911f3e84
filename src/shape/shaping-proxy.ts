import * as net from 'node:net';
import { TopasError } from '../errors';
import { compilePathPattern, type PathMatcher, type ShapeState } from './shape-state';
import { ProxiedConnection } from './proxied-connection';

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
    // paused so that no read is allocated before the socket reads into the shared buffer
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true }, (socket) => this.accept(socket));
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
