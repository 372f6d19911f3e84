import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { ShapingProxy, type ProxyMode } from '../../src/shape/shaping-proxy';
import { parseShapeCall } from '../../src/shape/shape-calls';
import { ShapeController } from '../../src/shape/shape-controller';
import { applyShapeChange, type ShapeState } from '../../src/shape/shape-state';

const BIG_BYTES = 256 * 1024;
const big = Buffer.alloc(BIG_BYTES, 7);

interface Upstream {
  port: number;
  server: http.Server;
  close(): Promise<void>;
}

/** A real HTTP server: `/big` sends 256 KB, `/echo-port` the client port it sees, anything else "ok:<path>". */
async function startUpstream(): Promise<Upstream> {
  const server = http.createServer((req, res) => {
    if (req.url === '/big') {
      res.writeHead(200, { 'content-length': String(big.length) });
      res.end(big);
      return;
    }
    req.resume();
    req.on('end', () => {
      const body = req.url === '/echo-port' ? String(req.socket.remotePort) : `ok:${req.url}`;
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(body);
    });
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    server,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

interface Reply {
  status: number;
  body: string;
  ms: number;
}

function get(port: number, path: string, opts: { agent?: http.Agent; timeoutMs?: number } = {}): Promise<Reply> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent: opts.agent ?? false, timeout: opts.timeoutMs ?? 10_000 }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts).toString('latin1'), ms: performance.now() - t0 }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error('client timeout'), { code: 'CLIENT_TIMEOUT' })));
    req.on('error', reject);
  });
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

async function upstreamConnections(u: Upstream): Promise<number> {
  return new Promise((r, j) => u.server.getConnections((e, n) => (e ? j(e) : r(n))));
}

describe('ShapingProxy', () => {
  let upstream: Upstream;
  const proxies: ShapingProxy[] = [];

  before(async () => {
    upstream = await startUpstream();
  });
  after(async () => {
    await Promise.all(proxies.map((p) => p.close()));
    await upstream.close();
  });

  async function proxy(mode: ProxyMode, shape?: ShapeState): Promise<{ p: ShapingProxy; port: number }> {
    const p = new ShapingProxy({ name: `api-${mode}`, mode, targets: () => [{ host: '127.0.0.1', port: upstream.port }] });
    proxies.push(p);
    const addr = await p.start();
    if (shape) p.setShape(shape);
    return { p, port: addr.port };
  }

  for (const mode of ['tcp', 'http'] as const) {
    test(`${mode}: unshaped passes requests and bodies through`, async () => {
      const { p, port } = await proxy(mode);
      const r = await get(port, '/hello?x=1');
      assert.equal(r.status, 200);
      assert.equal(r.body, 'ok:/hello?x=1');
      const b = await get(port, '/big');
      assert.equal(b.body.length, BIG_BYTES);
      assert.ok(b.body === big.toString('latin1'));
      assert.equal(p.stats().totalConnections, 2);
    });

    test(`${mode}: latency 200ms raises the median by at least 180ms`, async () => {
      const { p, port } = await proxy(mode);
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      const base: number[] = [];
      for (let i = 0; i < 5; i++) base.push((await get(port, '/x', { agent })).ms);
      p.setShape({ latency: { delayMs: 200, jitterMs: 0 } });
      const slow: number[] = [];
      for (let i = 0; i < 5; i++) slow.push((await get(port, '/x', { agent })).ms);
      agent.destroy();
      assert.ok(median(slow) - median(base) >= 180, `median ${median(base).toFixed(1)}ms -> ${median(slow).toFixed(1)}ms`);
    });
  }

  test('latency applies to an already open keep-alive connection', async () => {
    const { p, port } = await proxy('http');
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const first = await get(port, '/echo-port', { agent });
    p.setShape({ latency: { delayMs: 200, jitterMs: 20 } });
    const second = await get(port, '/echo-port', { agent });
    agent.destroy();
    assert.equal(second.body, first.body, 'same upstream connection');
    assert.equal(p.stats().totalConnections, 1);
    assert.ok(second.ms - first.ms >= 160, `${first.ms.toFixed(1)}ms -> ${second.ms.toFixed(1)}ms`);
  });

  test('bandwidth 1mbit stretches a 256 KB download to about 2 s', async () => {
    const { p, port } = await proxy('tcp', applyShapeChange({}, parseShapeCall('bandwidth', ['api', '1mbit']).change));
    const r = await get(port, '/big');
    assert.equal(r.body.length, BIG_BYTES);
    // 262144 B at 125000 B/s is 2.1 s; allow one pacing slice of slack
    assert.ok(r.ms >= 1900, `took ${r.ms.toFixed(0)}ms`);
    assert.equal(p.stats().bytesToClient > BIG_BYTES, true);
  });

  for (const mode of ['tcp', 'http'] as const) {
    test(`${mode}: loss also hits requests on an open keep-alive connection`, async () => {
      const { p, port } = await proxy(mode);
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      try {
        assert.equal((await get(port, '/x', { agent })).status, 200);
        assert.equal(p.stats().activeConnections, 1);
        p.setShape({ loss: { probability: 1 } });
        await assert.rejects(get(port, '/x', { agent }));
        assert.equal(p.stats().totalConnections, 1, 'the request went over the open connection');
        p.setShape({});
        assert.equal((await get(port, '/x', { agent })).status, 200);
        // per request: about half of 200 requests on kept-alive connections fail at 0.5
        p.setShape({ loss: { probability: 0.5 } });
        let failed = 0;
        for (let i = 0; i < 200; i++) await get(port, '/x', { agent }).catch(() => failed++);
        assert.ok(failed > 70 && failed < 130, `failed ${failed}/200`);
      } finally {
        agent.destroy();
      }
    });
  }

  test('loss 1.0 drops every new connection, loss 0 none', async () => {
    const { p, port } = await proxy('tcp', { loss: { probability: 1 } });
    let failed = 0;
    for (let i = 0; i < 10; i++) await get(port, '/x').catch(() => failed++);
    assert.equal(failed, 10);
    assert.equal(p.stats().resetConnections, 10);
    p.setShape({ loss: { probability: 0 } });
    for (let i = 0; i < 10; i++) assert.equal((await get(port, '/x')).status, 200);
  });

  test('down fails new and open connections; reset() recovers', async () => {
    const { p, port } = await proxy('http');
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    assert.equal((await get(port, '/x', { agent })).status, 200);
    const sockets = () => Object.values(agent.sockets).flat().length + Object.values(agent.freeSockets).flat().length;
    assert.equal(sockets(), 1);
    const openBefore = p.stats().activeConnections;
    p.setShape({ down: true });
    assert.equal(p.stats().activeConnections, openBefore - 1, 'the open connection was reset');
    await assert.rejects(get(port, '/x'), /ECONNRESET|socket hang up/);
    p.reset();
    assert.equal((await get(port, '/x', { agent })).status, 200);
    agent.destroy();
  });

  test('timeout: a client with a 300ms timeout times out; reset() recovers', async () => {
    const { p, port } = await proxy('http', { timeout: true });
    await assert.rejects(get(port, '/x', { timeoutMs: 300 }), (e: NodeJS.ErrnoException) => e.code === 'CLIENT_TIMEOUT');
    assert.ok(p.stats().heldConnections >= 1);
    // an open connection stops getting answers too
    p.reset();
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    assert.equal((await get(port, '/x', { agent })).status, 200);
    p.setShape({ timeout: true });
    await assert.rejects(get(port, '/x', { agent, timeoutMs: 300 }), (e: NodeJS.ErrnoException) => e.code === 'CLIENT_TIMEOUT');
    p.reset();
    assert.equal((await get(port, '/x', { agent })).status, 200);
    agent.destroy();
  });

  test('http_fault rate 1.0 answers every request with the status, on a keep-alive connection', async () => {
    const { p, port } = await proxy('http', { httpFault: { status: 503, rate: 1 } });
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    for (let i = 0; i < 20; i++) {
      const r = await get(port, '/x', { agent });
      assert.equal(r.status, 503);
    }
    assert.equal(p.stats().totalConnections, 1, 'the connection stayed open across faults');
    p.reset();
    assert.equal((await get(port, '/x', { agent })).status, 200);
    agent.destroy();
  });

  test('http_fault rate 0.5 hits between 30% and 70% of 200 requests', async () => {
    const { p, port } = await proxy('http', { httpFault: { status: 503, rate: 0.5 } });
    const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
    let faults = 0;
    let oks = 0;
    for (let batch = 0; batch < 50; batch++) {
      const rs = await Promise.all([0, 1, 2, 3].map(() => get(port, '/x', { agent })));
      for (const r of rs) {
        if (r.status === 503) faults++;
        else if (r.status === 200 && r.body === 'ok:/x') oks++;
      }
    }
    agent.destroy();
    assert.equal(faults + oks, 200);
    assert.ok(faults >= 60 && faults <= 140, `${faults} of 200 faulted`);
    assert.equal(p.stats().faultedRequests, faults);
  });

  test('http_fault path filter only affects matching paths (glob and Lua pattern)', async () => {
    const { p, port } = await proxy('http');
    const c = new ShapeController({ services: ['api'] });
    c.register('api', p);
    c.applyCall(parseShapeCall('http_fault', ['api', { status: 500, rate: 1, path: '/fail/*' }]));
    assert.equal((await get(port, '/fail/x')).status, 500);
    assert.equal((await get(port, '/fail/x?q=1')).status, 500);
    assert.equal((await get(port, '/fail/x/y')).status, 200);
    assert.equal((await get(port, '/ok')).status, 200);
    c.applyCall(parseShapeCall('http_fault', ['api', { status: 429, rate: 1, path: '^/users/%d+$' }]));
    assert.equal((await get(port, '/users/42')).status, 429);
    assert.equal((await get(port, '/users/bob')).status, 200);
    c.reset('api');
    assert.equal((await get(port, '/users/42')).status, 200);
    assert.deepEqual(
      c.history().map((h) => h.change.kind),
      ['http_fault', 'http_fault', 'reset'],
    );
  });

  test('POST bodies through http mode, faulted and not, on one connection', async () => {
    const { p, port } = await proxy('http', { httpFault: { status: 503, rate: 1, path: '/drop' } });
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const post = (path: string, body: string) =>
      new Promise<number>((resolve, reject) => {
        const req = http.request({ host: '127.0.0.1', port, path, method: 'POST', agent }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        });
        req.on('error', reject);
        req.end(body);
      });
    for (let i = 0; i < 5; i++) {
      assert.equal(await post('/drop', 'x'.repeat(1000 * i)), 503);
      assert.equal(await post('/keep', 'y'.repeat(1000 * i)), 200);
    }
    agent.destroy();
    assert.equal(p.stats().totalConnections, 1);
  });

  test('a faulted request with Expect: 100-continue gets its answer without sending the body', async () => {
    const { port } = await proxy('http', { httpFault: { status: 503, rate: 1 } });
    const status = await new Promise<number>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, path: '/x', method: 'POST', agent: false, headers: { expect: '100-continue', 'content-length': '5' } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      // the body is only sent on "100 Continue", which must not be needed
      req.on('continue', () => req.end('hello'));
      req.on('error', reject);
      req.flushHeaders();
    });
    assert.equal(status, 503);
  });

  test('no target or a dead target: the client sees a reset', async () => {
    const none = new ShapingProxy({ name: 'none', mode: 'tcp', targets: () => [] });
    proxies.push(none);
    await assert.rejects(get((await none.start()).port, '/x'), /ECONNRESET|socket hang up/);
    assert.equal(none.stats().upstreamErrors, 1);
    const dead = await startUpstream();
    const deadPort = dead.port;
    await dead.close();
    const p = new ShapingProxy({ name: 'dead', mode: 'http', targets: () => [{ host: '127.0.0.1', port: deadPort }] });
    proxies.push(p);
    await assert.rejects(get((await p.start()).port, '/x'), /ECONNRESET|socket hang up/);
    assert.equal(p.stats().upstreamErrors, 1);
    assert.equal(p.stats().activeConnections, 0);
  });

  test('a new replica list is used for new connections (round-robin)', async () => {
    const second = await startUpstream();
    try {
      let targets = [{ host: '127.0.0.1', port: upstream.port }];
      const p = new ShapingProxy({ name: 'rr', mode: 'tcp', targets: () => targets });
      proxies.push(p);
      const { port } = await p.start();
      await get(port, '/x');
      targets = [
        { host: '127.0.0.1', port: upstream.port },
        { host: '127.0.0.1', port: second.port },
      ];
      // two new connections alternate over the two replicas
      let served = 0;
      second.server.on('request', () => served++);
      const agent = new http.Agent({ keepAlive: true, maxSockets: 2 });
      await Promise.all([get(port, '/x', { agent }), get(port, '/x', { agent })]);
      agent.destroy();
      assert.equal(served, 1);
    } finally {
      await second.close();
    }
  });

  test('close() destroys open connections and stops listening', async () => {
    const { p, port } = await proxy('http', { latency: { delayMs: 50, jitterMs: 0 } });
    const agent = new http.Agent({ keepAlive: true, maxSockets: 3 });
    await Promise.all([get(port, '/x', { agent }), get(port, '/x', { agent }), get(port, '/x', { agent })]);
    assert.equal(p.stats().activeConnections, 3);
    const before = await upstreamConnections(upstream);
    assert.ok(before >= 3);
    await p.close();
    assert.equal(p.stats().activeConnections, 0);
    // the upstream side of every proxied connection is gone as well
    for (let i = 0; i < 50 && (await upstreamConnections(upstream)) > before - 3; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(await upstreamConnections(upstream), before - 3);
    await assert.rejects(get(port, '/x'), /ECONNREFUSED/);
    agent.destroy();
    await p.close();
  });
});
