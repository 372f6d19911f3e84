import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { startFixedProxyHost, type FixedProxyHost } from '../../src/shape/proxy-host-fixed';
import { ProxyHostClient } from '../../src/shape/proxy-host';

/** GET through a fresh connection: status, body and how long it took. */
function get(port: number, pathName: string): Promise<{ status: number; body: string; ms: number }> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: pathName, agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, ms: performance.now() - t0 }));
      })
      .on('error', reject);
  });
}

// The proxy host a cluster's proxy pod runs: fixed proxies from its config,
// shapes from the control API, on 127.0.0.1 here (0.0.0.0 in the pod).
describe('fixed proxy host (topas proxy-host --serve)', () => {
  let upstream: http.Server;
  let host: FixedProxyHost;
  const token = 'unit-token';

  before(async () => {
    upstream = http.createServer((req, res) => res.end(`upstream ${req.url}`));
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    const port = (upstream.address() as AddressInfo).port;
    host = await startFixedProxyHost(
      {
        control: { host: '127.0.0.1', port: 0 },
        // `localhost`: a host name, resolved per connection as a Service name is in the pod
        proxies: [{ key: 'api:main', service: 'api', mode: 'http', listen: { host: '127.0.0.1', port: 0 }, targets: [{ host: 'localhost', port }] }],
      },
      token,
    );
  });

  after(async () => {
    await host?.close();
    upstream?.close();
  });

  test('forwards to its upstream; a latency set through the control API delays answers by about that much; reset removes it', async () => {
    const port = host.addresses['api:main'].port;
    const client = new ProxyHostClient({ pid: 0, controlPort: host.control.port, token, host: '127.0.0.1' });
    const p50 = async () => {
      const ms: number[] = [];
      for (let i = 0; i < 7; i++) {
        const r = await get(port, '/fixed');
        assert.equal(r.status, 200);
        assert.equal(r.body, 'upstream /fixed');
        ms.push(r.ms);
      }
      return ms.sort((a, b) => a - b)[3];
    };
    const base = await p50();
    await client.setShape('api', { latency: { delayMs: 150, jitterMs: 0 } });
    const shaped = await p50();
    await client.setShape('api', {});
    const cleared = await p50();
    assert.ok(shaped - base >= 140 && shaped - base < 260, `latency 150ms added ${(shaped - base).toFixed(1)} ms`);
    assert.ok(cleared < base + 50, `after reset ${cleared.toFixed(1)} ms (base ${base.toFixed(1)} ms)`);
  });

  test('a shape of another service does not touch this proxy; a wrong token is refused; proxies are fixed', async () => {
    const port = host.addresses['api:main'].port;
    const client = new ProxyHostClient({ pid: 0, controlPort: host.control.port, token, host: '127.0.0.1' });
    await client.setShape('db', { down: true });
    assert.equal((await get(port, '/x')).status, 200);
    await client.setShape('db', {});
    const bad = new ProxyHostClient({ pid: 0, controlPort: host.control.port, token: 'wrong', host: '127.0.0.1' });
    await assert.rejects(bad.setShape('api', { down: true }), /bad token/);
    await assert.rejects(client.addProxy('x:main', 'x', 'tcp', '127.0.0.1'), /fixed set of proxies/);
  });
});
