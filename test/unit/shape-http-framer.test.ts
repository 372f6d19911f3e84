import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HttpRequestFramer, type RequestHead } from '../../src/shape/http-request-framer';

const reqs = [
  'GET /keep/1 HTTP/1.1\r\nHost: x\r\n\r\n',
  'POST /drop/2 HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world',
  'POST /keep/3 HTTP/1.1\r\nHost: x\r\ncontent-length: 5\r\n\r\nabcde',
  'PUT /drop/4 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n',
  'PUT /keep/5 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nwxyz\r\n0\r\n\r\n',
  'GET /drop/6?q=1 HTTP/1.0\r\n\r\n',
  'GET /keep/7 HTTP/1.1\r\nConnection: close\r\n\r\n',
];
const stream = Buffer.from(reqs.join(''), 'latin1');
const expectedForward = reqs.filter((r) => r.includes('/keep/')).join('');

function run(chunks: Buffer[]) {
  const forwarded: Buffer[] = [];
  const answered: Array<[RequestHead, number]> = [];
  const order: string[] = [];
  const f = new HttpRequestFramer((h) => (h.target.startsWith('/drop/') ? 503 : undefined));
  for (const c of chunks) {
    f.push(c, {
      forward: (b) => {
        forwarded.push(Buffer.from(b));
        order.push('f');
      },
      answer: (h, s) => {
        answered.push([h, s]);
        order.push(`a${h.target}`);
      },
    });
  }
  return { forwarded: Buffer.concat(forwarded).toString('latin1'), answered, f };
}

test('frames pipelined requests: forwards kept ones byte for byte, answers dropped ones', () => {
  const { forwarded, answered, f } = run([stream]);
  assert.equal(forwarded, expectedForward);
  assert.deepEqual(
    answered.map(([h, s]) => [h.method, h.target, h.keepAlive, s]),
    [
      ['POST', '/drop/2', true, 503],
      ['PUT', '/drop/4', true, 503],
      ['GET', '/drop/6?q=1', false, 503],
    ],
  );
  assert.equal(f.requests, 7);
  assert.equal(f.isPassthrough, false);
});

test('same result for every split point and for byte-by-byte delivery', () => {
  for (let i = 1; i < stream.length; i++) {
    const { forwarded, answered } = run([stream.subarray(0, i), stream.subarray(i)]);
    assert.equal(forwarded, expectedForward, `split at ${i}`);
    assert.equal(answered.length, 3, `split at ${i}`);
  }
  const bytes = [...stream].map((b) => Buffer.from([b]));
  const { forwarded, answered } = run(bytes);
  assert.equal(forwarded, expectedForward);
  assert.equal(answered.length, 3);
});

test('unframeable input and upgrades switch to passthrough', () => {
  const garbage = Buffer.from('NOT HTTP\r\n\r\nmore bytes');
  const a = run([garbage]);
  assert.equal(a.forwarded, garbage.toString('latin1'));
  assert.equal(a.f.isPassthrough, true);
  const ws = 'GET /drop/ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n';
  const up = run([Buffer.from('GET /keep/ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x05hello')]);
  assert.equal(up.f.isPassthrough, true);
  assert.match(up.forwarded, /hello$/);
  // a dropped upgrade request is answered and framing continues
  const d = run([Buffer.from(ws + reqs[0])]);
  assert.equal(d.answered.length, 1);
  assert.equal(d.forwarded, reqs[0]);
});

test('a dropped request that expects 100-continue is answered at once and the connection closes', () => {
  const head = 'POST /drop/e HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n';
  const r = run([Buffer.from(head), Buffer.from('hello' + reqs[0])]);
  assert.deepEqual(
    r.answered.map(([h, s]) => [h.target, h.keepAlive, s]),
    [['/drop/e', false, 503]],
  );
  assert.equal(r.forwarded, '');
  // a forwarded one is untouched
  const k = run([Buffer.from('POST /keep/e HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n'), Buffer.from('hello')]);
  assert.equal(k.forwarded, 'POST /keep/e HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello');
});

test('header names are read trimmed and case-insensitively, values trimmed (as latin1 text would be)', () => {
  const seen: RequestHead[] = [];
  const forwarded: string[] = [];
  const f = new HttpRequestFramer((h) => {
    seen.push(h);
    return h.target === '/drop' ? 503 : undefined;
  });
  const sink = { forward: (b: Buffer) => forwarded.push(b.toString('latin1')), answer: () => undefined };
  // a body length under an oddly spaced, oddly cased name (NBSP is trimmed too), then "Connection:\tClose"
  f.push(Buffer.from('\r\nPOST /drop HTTP/1.1\r\n \xa0CoNtEnT-LeNgTh \t: \xa05 \r\nConnection:\tClose\r\n\r\nhelloGET /k HTTP/1.1\r\n\r\n', 'latin1'), sink);
  assert.deepEqual(seen.map((h) => [h.method, h.target, h.keepAlive]), [
    ['POST', '/drop', false],
    ['GET', '/k', true],
  ]);
  // the dropped request's body was framed by its length: only the next request is forwarded
  assert.equal(forwarded.join(''), 'GET /k HTTP/1.1\r\n\r\n');
  // a header line without a colon is not HTTP as the framer knows it: passthrough from there
  const g = new HttpRequestFramer(() => 503);
  const out: string[] = [];
  g.push(Buffer.from('GET / HTTP/1.1\r\nno colon here\r\n\r\n', 'latin1'), { forward: (b) => out.push(b.toString('latin1')), answer: () => undefined });
  assert.equal(g.isPassthrough, true);
  assert.equal(out.join(''), 'GET / HTTP/1.1\r\nno colon here\r\n\r\n');
});

test('the request line is read on the bytes exactly as the request-line pattern reads its latin1 text', () => {
  // the pattern the framer used on a decoded line, kept here as the oracle
  const pattern = /^([A-Z!#$%&'*+.^_`|~0-9-]+) (\S+) HTTP\/1\.([01])$/;
  const lines = [
    'GET / HTTP/1.1',
    'GET / HTTP/1.0',
    "M-._~!#$%&'*+^`|09 /x?y=1 HTTP/1.1",
    'get / HTTP/1.1',
    'GET  / HTTP/1.1',
    'GET /a b HTTP/1.1',
    'GET /\ta HTTP/1.1',
    'GET /\xa0 HTTP/1.1',
    'GET /\xe9\x85 HTTP/1.1',
    'GET / HTTP/1.2',
    'GET / HTTP/2.0',
    'GET / HTTP/1.1 ',
    'GET / HTTP/1.',
    'GET / http/1.1',
    'GET /HTTP/1.1',
    ' GET / HTTP/1.1',
    'GET',
    'GET ',
    'GE(T / HTTP/1.1',
    'GET / HTTP/1.1x',
  ];
  for (const line of lines) {
    const m = pattern.exec(line);
    const seen: RequestHead[] = [];
    const f = new HttpRequestFramer((h) => {
      seen.push(h);
      return undefined;
    });
    f.push(Buffer.from(`${line}\r\nHost: x\r\n\r\n`, 'latin1'), { forward: () => undefined, answer: () => undefined });
    if (m) {
      assert.equal(f.isPassthrough, false, JSON.stringify(line));
      assert.deepEqual(
        seen.map((h) => [h.method, h.target, h.keepAlive]),
        [[m[1], m[2], m[3] === '1']],
        JSON.stringify(line),
      );
    } else {
      assert.equal(f.isPassthrough, true, JSON.stringify(line));
      assert.equal(seen.length, 0, JSON.stringify(line));
    }
  }
});
