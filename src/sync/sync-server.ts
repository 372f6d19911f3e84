import * as http from 'node:http';
import { timingSafeEqual } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import { TopasError, serializeError } from '../errors';
import { SyncBroker } from './sync-broker';
import { callSync } from './sync-group';
import { keepAlive, SYNC_MAX_PAYLOAD_BYTES, SYNC_TOKEN_HEADER, type SyncEndedEvent, type SyncReply, type SyncRequest } from './sync-protocol';

export interface SyncServerOptions {
  port: number;
  /** 127.0.0.1 unless told (a cluster's sync pod listens on 0.0.0.0) */
  host?: string;
  /** when set, every connection must present it (header x-topas-sync-token or ?token=) */
  token?: string;
  log?: (line: string) => void;
}

export interface SyncServer {
  /** ws://host:port (the address it listens on) */
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

interface Group {
  broker: SyncBroker;
  instances: string[];
  ended: Set<string>;
  watchers: Set<WebSocket>;
  /** which connection runs which instances: a connection that drops ends them */
  owners: Map<WebSocket, Set<string>>;
}

/**
 * SyncBrokers behind a WebSocket (`topas sync-server`): instances of one
 * playbook that run in different processes or pods meet here. A group (one
 * playbook of one run) is made by the first runner that joins it; every
 * runner joins with the same instance list, so a barrier of all instances
 * counts those of every runner. GET /healthz answers 200 (readiness probe).
 */
export async function startSyncServer(opts: SyncServerOptions): Promise<SyncServer> {
  const log = opts.log ?? (() => undefined);
  const groups = new Map<string, Group>();
  const httpServer = http.createServer((req, res) => {
    if (req.url === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
      return;
    }
    res.writeHead(426, { 'content-type': 'text/plain' }).end('topas sync server: connect with a WebSocket\n');
  });
  const wss = new WebSocketServer({
    server: httpServer,
    maxPayload: SYNC_MAX_PAYLOAD_BYTES,
    verifyClient: (info: { req: http.IncomingMessage }) => !opts.token || tokenMatches(opts.token, presentedToken(info.req)),
  });

  const endInstance = (g: Group, groupName: string, instance: string, reason: string, failed: boolean) => {
    if (g.ended.has(instance)) return;
    g.ended.add(instance);
    g.broker.instanceEnded(instance, reason);
    const ev: SyncEndedEvent = { ev: 'ended', group: groupName, instance, reason, failed };
    const text = JSON.stringify(ev);
    for (const w of g.watchers) if (w.readyState === w.OPEN) w.send(text);
    // every instance is done: nobody will ask this group anything again
    if (g.ended.size >= g.instances.length) {
      g.broker.close('the playbook ended');
      groups.delete(groupName);
    }
  };

  const serve = async (ws: WebSocket, req: SyncRequest): Promise<unknown> => {
    if (req.op === 'join') {
      if (!Array.isArray(req.instances) || req.instances.length === 0) throw new TopasError('INVALID_FLAGS', `sync: join of ${req.group} without instances`);
      let g = groups.get(req.group);
      if (!g) {
        g = { broker: new SyncBroker(req.instances, req.defaultTimeoutMs), instances: [...req.instances], ended: new Set(), watchers: new Set(), owners: new Map() };
        groups.set(req.group, g);
        log(`group ${req.group}: ${req.instances.length} instance(s)`);
      } else if (g.instances.join('\n') !== req.instances.join('\n')) {
        throw new TopasError('INVALID_FLAGS', `sync: runners of ${req.group} disagree on its instances (${g.instances.length} vs ${req.instances.length})`);
      }
      if (req.watch) g.watchers.add(ws);
      if (req.owns?.length) {
        const mine = g.owners.get(ws) ?? new Set<string>();
        for (const i of req.owns) mine.add(i);
        g.owners.set(ws, mine);
      }
      return undefined;
    }
    const g = groups.get(req.group);
    if (!g) throw new TopasError('INTERNAL', `sync: no group ${req.group} (its runner has not joined, or the playbook ended)`);
    if (req.op === 'ended') {
      endInstance(g, req.group, req.instance, req.reason, req.failed);
      return undefined;
    }
    return callSync(g.broker, req.instance, req.method, req.args ?? []);
  };

  wss.on('connection', (ws) => {
    const stopKeepAlive = keepAlive(ws);
    ws.on('message', (data, isBinary) => {
      let req: SyncRequest;
      try {
        if (isBinary) throw new Error('binary frame');
        req = JSON.parse(data.toString()) as SyncRequest;
        if (typeof req?.id !== 'number' || typeof req.group !== 'string') throw new Error('no id or group');
      } catch (err) {
        ws.close(1003, `topas sync: not a request (${(err as Error).message})`.slice(0, 120));
        return;
      }
      const reply = (r: SyncReply) => {
        if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(r));
      };
      serve(ws, req).then(
        (value) => reply({ id: req.id, ok: true, value }),
        (err) => {
          const { stack: _stack, ...e } = serializeError(err);
          reply({ id: req.id, ok: false, error: e });
        },
      );
    });
    ws.on('close', () => {
      stopKeepAlive();
      for (const [name, g] of [...groups]) {
        g.watchers.delete(ws);
        const owned = g.owners.get(ws);
        g.owners.delete(ws);
        for (const i of owned ?? []) endInstance(g, name, i, 'its runner lost the connection to sync', true);
      }
    });
    ws.on('error', () => undefined);
  });

  await new Promise<void>((resolve, reject) => {
    httpServer.once('error', reject);
    httpServer.listen(opts.port, opts.host ?? '127.0.0.1', () => resolve());
  });
  const port = (httpServer.address() as AddressInfo).port;
  const host = opts.host && opts.host !== '0.0.0.0' ? opts.host : '127.0.0.1';
  return {
    url: `ws://${host.includes(':') ? `[${host}]` : host}:${port}`,
    port,
    close: async () => {
      for (const g of groups.values()) g.broker.close('the sync server stopped');
      groups.clear();
      for (const c of wss.clients) c.terminate();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
      await new Promise<void>((resolve) => httpServer.close(() => resolve()));
    },
  };
}

function presentedToken(req: http.IncomingMessage): string {
  const h = req.headers[SYNC_TOKEN_HEADER];
  if (typeof h === 'string') return h;
  try {
    return new URL(req.url ?? '/', 'http://x').searchParams.get('token') ?? '';
  } catch {
    return '';
  }
}

function tokenMatches(expected: string, got: string): boolean {
  const a = Buffer.from(expected);
  const b = Buffer.from(got);
  return a.length === b.length && timingSafeEqual(a, b);
}
