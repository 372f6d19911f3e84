import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface RecordedRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export interface TestHttpServer {
  url: string;
  port: number;
  requests: RecordedRequest[];
  close(): Promise<void>;
}

export type Handler = (req: RecordedRequest, res: http.ServerResponse) => void;

/**
 * A real HTTP server on 127.0.0.1 and a free port. Without a handler it echoes
 * the request as JSON; `/status/NNN` answers NNN; `/slow` never answers.
 */
export async function startHttpServer(handler?: Handler): Promise<TestHttpServer> {
  const requests: RecordedRequest[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const rec: RecordedRequest = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') };
      requests.push(rec);
      if (handler) return handler(rec, res);
      const status = /^\/status\/(\d{3})/.exec(rec.url);
      if (rec.url.startsWith('/slow')) return; // left hanging: the client's timeout must fire
      res.writeHead(status ? Number(status[1]) : 200, { 'content-type': 'application/json', 'x-served-by': String((server.address() as AddressInfo).port) });
      res.end(JSON.stringify({ method: rec.method, url: rec.url, headers: rec.headers, body: rec.body }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
