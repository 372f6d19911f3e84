import * as net from 'node:net';
import { STATUS_CODES } from 'node:http';
import { HttpRequestFramer, type FramerSink, type RequestHead } from './http-request-framer';
import { requestPath, type ShapeState } from './shape-state';
import { Direction } from './proxy-direction';
import { copyOut, readIntoSharedBuffer } from './socket-read-buffer';
import type { ShapingProxy } from './shaping-proxy';

// Every socket reads into one of these; each read is copied out at once.
const UPSTREAM_READ_BUFFER = Buffer.allocUnsafe(64 * 1024);
const CLIENT_READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

/** One client connection through a ShapingProxy: its two directions, its upstream, and (http mode) its request framer. */
export class ProxiedConnection {
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
    const shared = readIntoSharedBuffer(client, CLIENT_READ_BUFFER, (n, buf) => {
      if (!this.destroyed) this.fromClient(copyOut(buf, n));
      return true;
    });
    if (!shared) client.on('data', (chunk: Buffer) => this.fromClient(chunk));
    client.on('end', () => {
      if (this.held) this.destroy();
      else this.toServer.endSource();
    });
    client.on('error', () => this.destroy());
    client.on('close', () => this.destroy());
    // accepted paused (ShapingProxy.start)
    client.resume();
  }

  private fromClient(chunk: Buffer): void {
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
            this.toClient.push(copyOut(buf, n));
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
