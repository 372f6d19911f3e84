import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import type { DashboardMetrics } from './metrics';
import { LogTail } from './log-tail';
import { queueOf, type ListedRun, type RunIndex } from './run-index';

/** How often the queue and a followed log are looked at (the same pace as `topas test logs --follow`). */
const POLL_MS = 200;
/** A client that does not read is not fed: its log waits on disk. */
const MAX_BUFFERED_BYTES = 1024 * 1024;
const LINES_PER_MESSAGE = 500;

const FINAL_STATES = new Set(['Passed', 'Partial', 'Failed', 'Error']);

function queueMessage(index: RunIndex): string {
  const q = queueOf(index.list());
  const slim = (r: ListedRun) => ({ runId: r.runId, state: r.state, app: r.app, name: r.name, startedAt: r.startedAt });
  return JSON.stringify({ type: 'queue', limitPerApp: q.limitPerApp, running: q.running.map(slim), pending: q.pending.map(slim) });
}

/**
 * The two live streams: `/ws/queue` (the queue, pushed when it changes) and
 * `/ws/logs/<id>` (a run's log lines as they are appended, then its final
 * state). The caller has checked the token before handing the upgrade over.
 */
export class LiveStreams {
  private readonly wss = new WebSocketServer({ noServer: true, maxPayload: 1024 });
  private readonly queueClients = new Set<WebSocket>();
  private lastQueue = '';
  private queueTimer: NodeJS.Timeout | undefined;
  private readonly timers = new Set<NodeJS.Timeout>();

  constructor(
    private readonly index: RunIndex,
    private readonly metrics: DashboardMetrics,
  ) {}

  /** false when the path is not a stream (the caller answers 404). */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, pathname: string): boolean {
    const logs = /^\/ws\/logs\/([^/]+)$/.exec(pathname);
    if (pathname !== '/ws/queue' && !logs) return false;
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      // a client breaking the protocol (or sending too much) loses its stream, never the server
      ws.on('error', () => ws.terminate());
      if (logs) this.followLog(ws, decodeURIComponent(logs[1]));
      else this.followQueue(ws);
    });
    return true;
  }

  private followQueue(ws: WebSocket): void {
    this.metrics.wsClients.inc({ stream: 'queue' });
    this.queueClients.add(ws);
    ws.on('close', () => {
      this.queueClients.delete(ws);
      this.metrics.wsClients.dec({ stream: 'queue' });
    });
    this.lastQueue = queueMessage(this.index);
    ws.send(this.lastQueue);
    if (!this.queueTimer) {
      this.queueTimer = setInterval(() => {
        if (!this.queueClients.size) return;
        let msg: string;
        try {
          msg = queueMessage(this.index);
        } catch {
          return; // the runs folder cannot be read just now: the next look may succeed
        }
        if (msg === this.lastQueue) return;
        this.lastQueue = msg;
        for (const c of this.queueClients) c.send(msg);
      }, POLL_MS);
    }
  }

  private followLog(ws: WebSocket, id: string): void {
    const first = this.index.get(id);
    if (!first) {
      ws.send(JSON.stringify({ type: 'error', message: `no run "${id}"` }));
      ws.close(4404, 'no such run');
      return;
    }
    this.metrics.wsClients.inc({ stream: 'logs' });
    const tail = new LogTail(this.index.store.logPath(id));
    let closed = false;
    let lastState = first.state;
    let timer: NodeJS.Timeout | undefined;
    ws.on('close', () => {
      closed = true;
      if (timer) {
        clearTimeout(timer);
        this.timers.delete(timer);
      }
      this.metrics.wsClients.dec({ stream: 'logs' });
    });
    ws.send(JSON.stringify({ type: 'state', state: first.state }));
    const tick = () => {
      if (timer) this.timers.delete(timer);
      timer = undefined;
      if (closed) return;
      let more: boolean | undefined;
      try {
        more = this.pump(ws, id, tail, lastState, (s) => (lastState = s));
      } catch (err) {
        ws.send(JSON.stringify({ type: 'error', message: `cannot read the log: ${(err as Error).message}` }));
        ws.close(1011, 'log unreadable');
        return;
      }
      if (more === undefined) return;
      timer = setTimeout(tick, more ? 0 : POLL_MS);
      this.timers.add(timer);
    };
    tick();
  }

  /** Sends what was appended since the last look; true: more is waiting, undefined: the run ended and the stream is closed. */
  private pump(ws: WebSocket, id: string, tail: LogTail, lastState: string, setState: (s: ListedRun['state']) => void): boolean | undefined {
    let more = false;
    if (ws.bufferedAmount < MAX_BUFFERED_BYTES) {
      // the state is read before the lines: a run that had ended by then wrote all its lines before it
      const state = this.index.get(id)?.state ?? 'Error';
      const read = tail.read();
      more = read.more;
      for (let i = 0; i < read.lines.length; i += LINES_PER_MESSAGE) ws.send(JSON.stringify({ type: 'lines', lines: read.lines.slice(i, i + LINES_PER_MESSAGE) }));
      if (state !== lastState) {
        setState(state);
        ws.send(JSON.stringify({ type: 'state', state }));
      }
      if (FINAL_STATES.has(state) && !more) {
        ws.send(JSON.stringify({ type: 'end', state }));
        ws.close(1000, 'run ended');
        return undefined;
      }
    }
    return more;
  }

  close(): void {
    if (this.queueTimer) clearInterval(this.queueTimer);
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    for (const c of this.wss.clients) c.terminate();
    this.wss.close();
  }
}
