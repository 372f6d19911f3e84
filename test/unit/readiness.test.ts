import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { TopasError } from '../../src/errors';
import { waitForHttp, waitForLog, waitForTcp } from '../../src/backends/readiness';

function listen(server: http.Server | net.Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));
}
function close(server: http.Server | net.Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}
/** A port nothing listens on: bind, read it, release it. */
async function closedPort(): Promise<number> {
  const s = net.createServer();
  const port = await listen(s);
  await close(s);
  return port;
}
async function rejection(p: Promise<unknown>): Promise<TopasError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof TopasError, `expected a TopasError, got ${String(e)}`);
    return e;
  }
  assert.fail('expected a rejection');
}

describe('waitForHttp', () => {
  test('resolves once the path answers 2xx, after earlier 503s', async () => {
    let hits = 0;
    const server = http.createServer((req, res) => {
      hits++;
      assert.equal(req.url, '/healthz');
      res.writeHead(hits < 3 ? 503 : 200).end();
    });
    const port = await listen(server);
    try {
      await waitForHttp(`http://127.0.0.1:${port}`, { path: '/healthz', timeoutMs: 10_000, intervalMs: 10 });
      assert.equal(hits, 3);
    } finally {
      await close(server);
    }
  });

  test('a redirect counts as ready', async () => {
    const server = http.createServer((_req, res) => res.writeHead(302, { location: '/elsewhere' }).end());
    const port = await listen(server);
    try {
      await waitForHttp(`http://127.0.0.1:${port}`, { path: '/', timeoutMs: 5000 });
    } finally {
      await close(server);
    }
  });

  test('times out with READINESS_TIMEOUT naming the probe, the label and the last status', async () => {
    const server = http.createServer((_req, res) => res.writeHead(500).end());
    const port = await listen(server);
    try {
      const err = await rejection(
        waitForHttp(`http://127.0.0.1:${port}`, { path: '/healthz', timeoutMs: 300, intervalMs: 20, label: 'service api replica 2', context: () => 'last log lines:\nboot failed' }),
      );
      assert.equal(err.code, 'READINESS_TIMEOUT');
      assert.match(err.message, /^service api replica 2: not ready after 300ms \(http GET \/healthz: last result HTTP 500\)/);
      assert.match(err.message, /boot failed/);
    } finally {
      await close(server);
    }
  });

  test('a refused connection is reported as the last result', async () => {
    const port = await closedPort();
    const err = await rejection(waitForHttp(`http://127.0.0.1:${port}`, { path: '/healthz', timeoutMs: 200, intervalMs: 20 }));
    assert.equal(err.code, 'READINESS_TIMEOUT');
    assert.match(err.message, /ECONNREFUSED/);
  });

  test('stops with INTERRUPTED when the signal aborts', async () => {
    const port = await closedPort();
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 100);
    const err = await rejection(waitForHttp(`http://127.0.0.1:${port}`, { timeoutMs: 60_000, intervalMs: 20, signal: ac.signal }));
    assert.equal(err.code, 'INTERRUPTED');
  });

  test('the liveness hook fails the wait at once with its description', async () => {
    const port = await closedPort();
    let calls = 0;
    const err = await rejection(
      waitForHttp(`http://127.0.0.1:${port}`, {
        path: '/healthz',
        timeoutMs: 60_000,
        intervalMs: 10,
        label: 'service api replica 1',
        liveness: () => (++calls >= 3 ? 'exit code 3; last log lines:\nError: DATABASE_URL missing' : undefined),
      }),
    );
    assert.equal(err.code, 'SUT_START_FAILED');
    assert.match(err.message, /service api replica 1: exited/);
    assert.match(err.message, /DATABASE_URL missing/);
    assert.equal(calls, 3);
  });
});

describe('waitForTcp', () => {
  test('resolves when the port accepts connections', async () => {
    const server = net.createServer((s) => s.end());
    const port = await listen(server);
    try {
      await waitForTcp('127.0.0.1', port, { timeoutMs: 5000 });
    } finally {
      await close(server);
    }
  });

  test('resolves when the listener appears later', async () => {
    const port = await closedPort();
    const server = net.createServer((s) => s.end());
    const late = setTimeout(() => server.listen(port, '127.0.0.1'), 150);
    try {
      await waitForTcp('127.0.0.1', port, { timeoutMs: 10_000, intervalMs: 20 });
    } finally {
      clearTimeout(late);
      if (server.listening) await close(server);
    }
  });

  test('times out naming host:port', async () => {
    const port = await closedPort();
    const err = await rejection(waitForTcp('127.0.0.1', port, { timeoutMs: 150, intervalMs: 20, label: 'database db' }));
    assert.equal(err.code, 'READINESS_TIMEOUT');
    assert.match(err.message, new RegExp(`^database db: not ready after 150ms \\(tcp 127\\.0\\.0\\.1:${port}: last result ECONNREFUSED\\)`));
  });
});

describe('waitForLog', () => {
  test('resolves when the pattern appears in the logs (substring)', async () => {
    let logs = 'booting\n';
    const t = setTimeout(() => (logs += 'listening on 8080 (version 1.0.0)\n'), 100);
    try {
      await waitForLog(() => logs, 'listening on 8080 (version', { timeoutMs: 10_000, intervalMs: 10 });
    } finally {
      clearTimeout(t);
    }
  });

  test('accepts a regular expression', async () => {
    await waitForLog(() => 'server started on port 4242\n', 'started on port \\d+', { timeoutMs: 1000 });
  });

  test('times out showing the last line seen', async () => {
    const err = await rejection(waitForLog(() => 'booting\nstill booting\n', 'listening', { timeoutMs: 100, intervalMs: 10, label: 'service worker replica 1' }));
    assert.equal(err.code, 'READINESS_TIMEOUT');
    assert.match(err.message, /service worker replica 1: not ready after 100ms \(log \/listening\/: last result last line "still booting"\)/);
  });
});
