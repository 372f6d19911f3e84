import http from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A small recording reverse proxy: forwards every request to `target` and
 * keeps each exchange as a HAR 1.2 entry (timings from this side).
 */
export async function startHarRecorder(target: string): Promise<{ url: string; har(): object; close(): Promise<void> }> {
  const entries: object[] = [];
  const server = http.createServer((req, res) => {
    const started = new Date();
    const t0 = performance.now();
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const up = http.request(new URL(req.url ?? '/', target), { method: req.method, headers: { ...req.headers, host: new URL(target).host } }, (upRes) => {
        const out: Buffer[] = [];
        upRes.on('data', (c: Buffer) => out.push(c));
        upRes.on('end', () => {
          const text = Buffer.concat(out).toString('utf8');
          const ms = performance.now() - t0;
          const self = `http://${req.headers.host}`;
          const url = new URL(req.url ?? '/', self);
          entries.push({
            startedDateTime: started.toISOString(),
            time: ms,
            request: {
              method: req.method,
              url: url.toString(),
              httpVersion: `HTTP/${req.httpVersion}`,
              headers: Object.entries(req.headers).map(([name, value]) => ({ name, value: String(value) })),
              queryString: [...url.searchParams].map(([name, value]) => ({ name, value })),
              cookies: [],
              headersSize: -1,
              bodySize: body.length,
              ...(body.length ? { postData: { mimeType: String(req.headers['content-type'] ?? ''), text: body.toString('utf8') } } : {}),
            },
            response: {
              status: upRes.statusCode,
              statusText: upRes.statusMessage ?? '',
              httpVersion: 'HTTP/1.1',
              headers: Object.entries(upRes.headers).map(([name, value]) => ({ name, value: String(value) })),
              cookies: [],
              content: { size: text.length, mimeType: String(upRes.headers['content-type'] ?? ''), text },
              redirectURL: '',
              headersSize: -1,
              bodySize: text.length,
            },
            cache: {},
            timings: { send: 0, wait: ms, receive: 0 },
          });
          res.writeHead(upRes.statusCode ?? 502, upRes.headers);
          res.end(Buffer.concat(out));
        });
      });
      up.on('error', (e) => {
        res.writeHead(502);
        res.end(e.message);
      });
      up.end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    har: () => ({ log: { version: '1.2', creator: { name: 'topas-test-recorder', version: '1' }, entries } }),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
