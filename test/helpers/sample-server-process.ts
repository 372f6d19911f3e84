/**
 * A sample server in its own process (forked by tests that load it hard, so
 * it does not share the coordinator's event loop): answers every request with
 * the next number of a deterministic sequence, 0.05 .. 250 ms with a long
 * tail, 3 decimals, and keeps what it handed out. IPC: it sends {port} once
 * listening; {type:'take'} answers {samples} (and clears them).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

let seed = Number(process.argv[2] ?? 4242);
const next = () => {
  seed = (seed * 1103515245 + 12345) % 2147483648;
  const u = seed / 2147483648;
  return Math.round((0.05 + 250 * u ** 4) * 1000) / 1000;
};
let samples: number[] = [];
const server = http.createServer((req, res) => {
  req.resume();
  const v = next();
  samples.push(v);
  res.writeHead(200, { 'content-type': 'text/plain' });
  res.end(String(v));
});
server.keepAliveTimeout = 30_000;
server.listen(0, '127.0.0.1', () => process.send!({ port: (server.address() as AddressInfo).port }));
process.on('message', (m: { type: string }) => {
  if (m.type === 'take') {
    process.send!({ samples });
    samples = [];
  }
});
// the test process gone: nothing to serve
process.on('disconnect', () => process.exit(0));
