import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import * as net from 'node:net';
import { SyncBroker } from '../../src/sync/sync-broker';
import { routeRpc } from '../../src/run/rpc-router';
import { startSyncServer } from '../../src/sync/sync-server';
import { RemoteSyncGroup, SyncClient, SyncClients } from '../../src/sync/sync-client';
import { syncBehaviourSuite } from './sync-behaviour-suite';

// the rpc path: a worker's call reaches the coordinator's router, which serves it from an in-process broker
syncBehaviourSuite('rpc to the coordinator (in-process SyncBroker)', async (instances, timeoutMs) => {
  const broker = new SyncBroker(instances, timeoutMs);
  const rpc = routeRpc({ sut: async () => undefined, sync: (runId) => ({ broker, instance: runId }) });
  return {
    call: (instance, method, args) => rpc(instance, method, args),
    ended: (instance, reason) => broker.instanceEnded(instance, reason),
    close: (reason) => broker.close(reason),
    dispose: () => broker.close('done'),
  };
});

// the network path: workers call the sync server themselves (one client per worker); runners join as coordinators
syncBehaviourSuite('a sync server over a WebSocket', async (instances, timeoutMs) => {
  const server = await startSyncServer({ port: 0, token: 'secret' });
  const group = 'run-1/p1';
  // two runners, each the coordinator of half the instances
  const half = Math.ceil(instances.length / 2);
  const runners = await Promise.all(
    [instances.slice(0, half), instances.slice(half)].map((owns) => RemoteSyncGroup.join({ url: server.url, token: 'secret', group, instances, owns, defaultTimeoutMs: timeoutMs })),
  );
  // two workers, each with its own connection
  const workers = [new SyncClients(), new SyncClients()];
  const target = { url: server.url, token: 'secret', group };
  return {
    call: (instance, method, args) => workers[instances.indexOf(instance) % 2].call(target, instance, method, args),
    ended: async (instance, reason) => {
      runners[instances.indexOf(instance) < half ? 0 : 1].instanceEnded(instance, reason);
      await new Promise((r) => setTimeout(r, 30));
    },
    close: () => server.close(),
    dispose: async () => {
      for (const w of workers) w.close();
      for (const r of runners) r.close('done');
      await server.close();
    },
  };
});

describe('sync server: what only the network path has', () => {
  test('a runner whose connection drops ends its instances: a barrier that needs them fails at once, naming them', async () => {
    const server = await startSyncServer({ port: 0 });
    try {
      const instances = ['a-1', 'a-2', 'b-1'];
      const a = await RemoteSyncGroup.join({ url: server.url, group: 'g', instances, owns: ['a-1', 'a-2'], defaultTimeoutMs: 60_000 });
      const heard: string[] = [];
      const b = await RemoteSyncGroup.join({ url: server.url, group: 'g', instances, owns: ['b-1'], defaultTimeoutMs: 60_000, onFailure: (i, why) => heard.push(`${i}: ${why}`) });
      const t0 = Date.now();
      const waiting = b.barrier('b-1', 'all', 3);
      waiting.catch(() => undefined);
      a.close('gone');
      await assert.rejects(waiting, /cannot complete: 1\/3 arrived and a-1 \(its runner lost the connection to sync\) ended before arriving/);
      assert.ok(Date.now() - t0 < 5000);
      assert.deepEqual(heard, ['a-1: its runner lost the connection to sync', 'a-2: its runner lost the connection to sync']);
      b.close('done');
    } finally {
      await server.close();
    }
  });

  test("a failed instance is told to the other runners, not to its own; a passed one to nobody", async () => {
    const server = await startSyncServer({ port: 0 });
    try {
      const instances = ['a-1', 'b-1', 'b-2'];
      const heardA: string[] = [];
      const heardB: string[] = [];
      const a = await RemoteSyncGroup.join({ url: server.url, group: 'g', instances, owns: ['a-1'], defaultTimeoutMs: 5000, onFailure: (i) => heardA.push(i) });
      const b = await RemoteSyncGroup.join({ url: server.url, group: 'g', instances, owns: ['b-1', 'b-2'], defaultTimeoutMs: 5000, onFailure: (i) => heardB.push(i) });
      b.instanceEnded('b-2', 'it finished');
      a.instanceEnded('a-1', 'failed: client gave up');
      await new Promise((r) => setTimeout(r, 100));
      assert.deepEqual(heardA, []);
      assert.deepEqual(heardB, ['a-1']);
      a.close('done');
      b.close('done');
    } finally {
      await server.close();
    }
  });

  test('runners that disagree on the instances are refused; a wrong token is refused; /healthz answers', async () => {
    const server = await startSyncServer({ port: 0, token: 't0ken' });
    try {
      const a = await RemoteSyncGroup.join({ url: server.url, token: 't0ken', group: 'g', instances: ['x', 'y'], owns: ['x'], defaultTimeoutMs: 5000 });
      await assert.rejects(RemoteSyncGroup.join({ url: server.url, token: 't0ken', group: 'g', instances: ['x', 'y', 'z'], owns: ['z'], defaultTimeoutMs: 5000 }), /disagree on its instances/);
      await assert.rejects(SyncClient.connect(server.url, { token: 'wrong', connectTimeoutMs: 2000 }), /answered 401/);
      await assert.rejects(SyncClient.connect(server.url, { connectTimeoutMs: 2000 }), /answered 401/);
      const health = await new Promise<number>((resolve, reject) => http.get(`${server.url.replace('ws:', 'http:')}/healthz`, (res) => resolve(res.statusCode ?? 0)).on('error', reject));
      assert.equal(health, 200);
      a.close('done');
    } finally {
      await server.close();
    }
  });

  test('a client waits for a server that is not up yet, and gives up at its deadline naming the URL', async () => {
    const probe = await startSyncServer({ port: 0 });
    const port = probe.port;
    await probe.close();
    const late = setTimeout(() => void startSyncServer({ port }).then((s) => (later = s)), 600);
    let later: Awaited<ReturnType<typeof startSyncServer>> | undefined;
    const c = await SyncClient.connect(`ws://127.0.0.1:${port}`, { connectTimeoutMs: 10_000 });
    c.close();
    clearTimeout(late);
    await later?.close();
    await assert.rejects(SyncClient.connect(`ws://127.0.0.1:${port}`, { connectTimeoutMs: 600 }), new RegExp(`cannot reach the sync server at ws://127.0.0.1:${port}`));
  });

  test('a runner cut off the network without a FIN (its pod deleted): the server ends its instances after a missed heartbeat', async () => {
    const server = await startSyncServer({ port: 0 });
    // a relay that can go silent: bytes stop flowing both ways, no socket is closed
    let cut = false;
    const sockets: net.Socket[] = [];
    const relay = net.createServer((inbound) => {
      const outbound = net.connect(server.port, '127.0.0.1');
      sockets.push(inbound, outbound);
      inbound.on('data', (d) => !cut && outbound.write(d));
      outbound.on('data', (d) => !cut && inbound.write(d));
      inbound.on('error', () => undefined);
      outbound.on('error', () => undefined);
    });
    await new Promise<void>((r) => relay.listen(0, '127.0.0.1', () => r()));
    const relayUrl = `ws://127.0.0.1:${(relay.address() as net.AddressInfo).port}`;
    try {
      const instances = ['a-1', 'b-1'];
      const a = await RemoteSyncGroup.join({ url: relayUrl, group: 'g', instances, owns: ['a-1'], defaultTimeoutMs: 60_000 });
      const b = await RemoteSyncGroup.join({ url: server.url, group: 'g', instances, owns: ['b-1'], defaultTimeoutMs: 60_000 });
      const waiting = b.barrier('b-1', 'all', 2);
      waiting.catch(() => undefined);
      const t0 = Date.now();
      cut = true;
      await assert.rejects(waiting, /a-1 \(its runner lost the connection to sync\)/);
      const ms = Date.now() - t0;
      assert.ok(ms < 10_000, `noticed after ${ms} ms`);
      a.close('done');
      b.close('done');
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => relay.close(() => r()));
      await server.close();
    }
  });
});
