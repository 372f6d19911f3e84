import * as http from 'node:http';
import * as net from 'node:net';
import type { Duplex } from 'node:stream';

/**
 * An http.Agent that sends requests addressed to a service name
 * (`http://api/...`, the form `{{baseUrl}}` takes when it names a service) to
 * that service's endpoint on the current backend. `resolve` is net's URL
 * resolver, so the round-robin over replicas is the same as `net.get`'s;
 * other hosts connect as usual. No keep-alive: each request opens its own
 * connection, which is what spreads a collection over the replicas.
 */
export class ServiceAgent extends http.Agent {
  private closed = false;

  constructor(private readonly resolve: (url: string) => string) {
    super({ keepAlive: false });
  }

  override createConnection(options: net.NetConnectOpts & { host?: string; port?: number | string }): Duplex {
    if (this.closed) {
      const s = new net.Socket();
      process.nextTick(() => s.destroy(new Error('the scenario ended')));
      return s;
    }
    const host = options.host ?? 'localhost';
    const port = Number(options.port ?? 80);
    let target = { host, port };
    try {
      const u = new URL(this.resolve(`http://${host.includes(':') ? `[${host}]` : host}:${port}/`));
      target = { host: u.hostname.replace(/^\[|\]$/g, ''), port: Number(u.port || 80) };
    } catch {
      // not a URL host we can resolve: connect as given
    }
    // postman's own lookup would re-resolve the original name; the target is a plain address
    const { lookup: _ignored, ...rest } = options as net.NetConnectOpts & { lookup?: unknown };
    void _ignored;
    // returning the socket is enough: http.Agent calls its own callback for a returned socket
    return net.createConnection({ ...(rest as net.TcpNetConnectOpts), host: target.host, port: target.port });
  }

  /** Refuse new connections and drop the open ones (the scenario was cancelled). */
  close(): void {
    this.closed = true;
    this.destroy();
  }
}
