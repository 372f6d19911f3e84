import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { RawHttpClient, type RawRequest } from '../../src/lua/vu-raw-http';
import { parseHeaderBlock, type LeanResponse } from '../../src/lua/vu-http';

const client = new RawHttpClient();
const ac = new AbortController();
after(() => client.close());

function req(origin: string, path: string, more: Partial<RawRequest> = {}): Promise<LeanResponse> {
  const p = client.request({ origin, path, method: 'GET', headers: {}, signal: ac.signal, timeoutMs: 5000, ...more });
  assert.ok(p, 'the raw client takes the request');
  return p;
}

async function httpServer(handler: http.RequestListener): Promise<{ origin: string; server: http.Server; sockets: Set<net.Socket>; close(): Promise<void> }> {
  const server = http.createServer(handler);
  const sockets = new Set<net.Socket>();
  server.on('connection', (s) => sockets.add(s));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    server,
    sockets,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** A raw TCP server that answers each request with the given bytes (a function of the request count). */
async function tcpServer(answer: (n: number, sock: net.Socket) => void): Promise<{ origin: string; close(): Promise<void>; connections: () => number }> {
  let n = 0;
  let conns = 0;
  const socks = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    conns++;
    socks.add(sock);
    let buf = '';
    sock.on('data', (d) => {
      buf += d.toString('latin1');
      let i: number;
      while ((i = buf.indexOf('\r\n\r\n')) >= 0) {
        buf = buf.slice(i + 4);
        answer(++n, sock);
      }
    });
    sock.on('error', () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    connections: () => conns,
    close: () =>
      new Promise<void>((r) => {
        for (const s of socks) s.destroy();
        server.close(() => r());
      }),
  };
}

test('keep-alive: sequential requests reuse one connection; request line and headers as undici sends them', async () => {
  const seen: Array<{ method: string; url: string; headers: http.IncomingHttpHeaders; raw: string[]; body: string }> = [];
  const s = await httpServer((rq, res) => {
    let body = '';
    rq.on('data', (c) => (body += c));
    rq.on('end', () => {
      seen.push({ method: rq.method!, url: rq.url!, headers: rq.headers, raw: rq.rawHeaders, body });
      res.writeHead(201, { 'X-Mixed-Case': 'Yes', 'Content-Type': 'text/plain' });
      res.end(`hello ${body}`);
    });
  });
  try {
    for (let i = 0; i < 5; i++) {
      const r = await req(s.origin, `/a?i=${i}`);
      assert.equal(r.statusCode, 201);
      assert.equal(r.body, 'hello ');
      assert.equal(parseHeaderBlock(r.rawHeaders)['x-mixed-case'], 'Yes');
      assert.equal(parseHeaderBlock(r.rawHeaders)['content-type'], 'text/plain');
    }
    assert.equal(s.sockets.size, 1, 'one connection for all');
    const p = await req(s.origin, '/p', { method: 'POST', headers: { 'content-type': 'application/json', 'x-a': 'b' }, body: '{"é":1}' });
    assert.equal(p.body, 'hello {"é":1}');
    assert.equal(s.sockets.size, 1);
    const e = await req(s.origin, '/e', { method: 'PUT' });
    assert.equal(e.statusCode, 201);
    assert.equal(seen[0].method, 'GET');
    assert.equal(seen[0].url, '/a?i=0');
    assert.deepEqual(seen[0].raw, ['host', s.origin.slice('http://'.length), 'connection', 'keep-alive']);
    assert.equal(seen[5].headers['content-length'], String(Buffer.byteLength('{"é":1}')));
    assert.equal(seen[5].headers['x-a'], 'b');
    assert.equal(seen[6].headers['content-length'], '0');
  } finally {
    await s.close();
  }
});

test('concurrent requests open one connection each, then share the pool', async () => {
  const s = await httpServer((_rq, res) => setTimeout(() => res.end('ok'), 20));
  try {
    const rs = await Promise.all(Array.from({ length: 4 }, () => req(s.origin, '/')));
    assert.deepEqual(rs.map((r) => r.body), ['ok', 'ok', 'ok', 'ok']);
    assert.equal(s.sockets.size, 4);
    await Promise.all(Array.from({ length: 4 }, () => req(s.origin, '/')));
    assert.equal(s.sockets.size, 4);
  } finally {
    await s.close();
  }
});

test('chunked bodies, split across reads, with trailers', async () => {
  const s = await tcpServer((n, sock) => {
    if (n === 1) {
      sock.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\nX-A: 2\r\n\r\n5;ext=1\r\nhello\r\n');
      setTimeout(() => sock.write('6\r\n wor'), 10);
      setTimeout(() => sock.write('ld\r\n0\r\nX-Trailer: t\r\n\r\n'), 20);
    } else {
      sock.write('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n');
    }
  });
  try {
    const r = await req(s.origin, '/');
    assert.equal(r.body, 'hello world');
    assert.equal(parseHeaderBlock(r.rawHeaders)['x-a'], '1, 2');
    const r2 = await req(s.origin, '/');
    assert.equal(r2.body, 'abc');
    assert.equal(s.connections(), 1);
  } finally {
    await s.close();
  }
});

test('content-length bodies split across reads, utf-8 and a BOM', async () => {
  const body = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('{"name":"zoë"}'.repeat(3000))]);
  const s = await tcpServer((_n, sock) => {
    const all = Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n`), body]);
    // split in the middle of the headers and of a multi-byte character
    sock.write(all.subarray(0, 20));
    setTimeout(() => sock.write(all.subarray(20, 60)), 5);
    setTimeout(() => sock.write(all.subarray(60)), 10);
  });
  try {
    const r = await req(s.origin, '/');
    assert.equal(r.body, '{"name":"zoë"}'.repeat(3000));
  } finally {
    await s.close();
  }
});

test('HEAD, 204 and 304 have no body; 1xx is skipped', async () => {
  const s = await tcpServer((n, sock) => {
    if (n === 1) sock.write('HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n');
    else if (n === 2) sock.write('HTTP/1.1 204 No Content\r\n\r\n');
    else if (n === 3) sock.write('HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n');
    else sock.write('HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
  });
  try {
    const h = await req(s.origin, '/', { method: 'HEAD' });
    assert.equal(h.statusCode, 200);
    assert.equal(h.body, '');
    assert.equal(parseHeaderBlock(h.rawHeaders)['content-length'], '50');
    const n = await req(s.origin, '/');
    assert.equal(n.statusCode, 204);
    assert.equal(n.body, '');
    const m = await req(s.origin, '/');
    assert.equal(m.statusCode, 304);
    const e = await req(s.origin, '/');
    assert.equal(e.statusCode, 200);
    assert.equal(e.body, 'ok');
    assert.equal(s.connections(), 1);
  } finally {
    await s.close();
  }
});

test('Connection: close and read-until-close bodies; the next request opens a new connection', async () => {
  const s = await tcpServer((n, sock) => {
    if (n === 1) {
      sock.write('HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\none');
      sock.end();
    } else if (n === 2) {
      sock.write('HTTP/1.1 200 OK\r\n\r\nuntil ');
      setTimeout(() => sock.end('close'), 10);
    } else sock.write('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nthree');
  });
  try {
    assert.equal((await req(s.origin, '/')).body, 'one');
    assert.equal((await req(s.origin, '/')).body, 'until close');
    assert.equal((await req(s.origin, '/')).body, 'three');
    assert.equal(s.connections(), 3);
  } finally {
    await s.close();
  }
});

test('a kept-alive connection the server closed is retried on a fresh one (idempotent requests)', async () => {
  const s = await httpServer((_rq, res) => res.end('fine'));
  try {
    assert.equal((await req(s.origin, '/')).body, 'fine');
    // the server drops the idle connection; the client has not noticed yet when it sends the next request
    for (const sock of s.sockets) sock.destroy();
    assert.equal((await req(s.origin, '/')).body, 'fine');
  } finally {
    await s.close();
  }
});

test('the server closing mid-response fails the request', async () => {
  const s = await tcpServer((_n, sock) => {
    sock.write('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc');
    setTimeout(() => sock.destroy(), 10);
  });
  try {
    await assert.rejects(req(s.origin, '/'), (e: Error & { code?: string }) => e.message === 'other side closed' && e.code === 'UND_ERR_SOCKET');
  } finally {
    await s.close();
  }
});

test('headers and body timeouts carry undici codes', async () => {
  const s = await tcpServer((n, sock) => {
    if (n === 2) sock.write('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc');
    // n === 1: no answer at all
  });
  try {
    const t0 = Date.now();
    await assert.rejects(req(s.origin, '/', { timeoutMs: 150 }), (e: Error & { code?: string }) => e.code === 'UND_ERR_HEADERS_TIMEOUT');
    assert.ok(Date.now() - t0 >= 140);
    await assert.rejects(req(s.origin, '/', { timeoutMs: 150 }), (e: Error & { code?: string }) => e.code === 'UND_ERR_BODY_TIMEOUT');
  } finally {
    await s.close();
  }
});

test('connection refused raises the socket error', async () => {
  const s = await httpServer((_rq, res) => res.end());
  const origin = s.origin;
  await s.close();
  await assert.rejects(req(origin, '/x'), (e: Error & { code?: string }) => e.code === 'ECONNREFUSED' && e.message === `connect ECONNREFUSED ${origin.slice(7)}`);
});

test('an abort fails the requests of its signal', async () => {
  const s = await tcpServer(() => undefined);
  try {
    const own = new AbortController();
    const p = client.request({ origin: s.origin, path: '/', method: 'GET', headers: {}, signal: own.signal, timeoutMs: 5000 })!;
    setTimeout(() => own.abort(new Error('stop')), 20);
    await assert.rejects(p, /stop/);
  } finally {
    await s.close();
  }
});

test('what the raw client leaves to undici', () => {
  const q = (more: Partial<RawRequest>) => client.request({ origin: 'http://127.0.0.1:1', path: '/', method: 'GET', headers: {}, signal: ac.signal, timeoutMs: 1000, ...more });
  assert.equal(q({ origin: 'https://127.0.0.1:1' }), undefined);
  assert.equal(q({ headers: { expect: '100-continue' } }), undefined);
  assert.equal(q({ headers: { host: 'other' } }), undefined);
  assert.equal(q({ headers: { upgrade: 'websocket' } }), undefined);
  assert.equal(q({ headers: { 'x-bad': 'a\r\nb' } }), undefined);
  assert.equal(q({ method: 'GET', body: 'x' }), undefined);
  assert.equal(q({ method: 'POST', body: 'x'.repeat(2 << 20) }), undefined);
});
