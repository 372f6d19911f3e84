import * as http from 'node:http';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { RunState } from './scenario-types';

/**
 * Prometheus metrics of a batch while topas runs (`--metrics-port`). A registry
 * of its own, so nothing global leaks between in-process runs.
 */
export class RunMetrics {
  readonly registry = new Registry();
  private readonly queueDepth = new Gauge({ name: 'topas_queue_depth', help: 'scenario runs waiting to start', registers: [this.registry] });
  private readonly activeRunners = new Gauge({ name: 'topas_active_runners', help: 'scenario runs in progress', registers: [this.registry] });
  private readonly duration = new Histogram({
    name: 'topas_test_duration_seconds',
    help: 'duration of finished scenario runs',
    buckets: [0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 300],
    registers: [this.registry],
  });
  private readonly runs = new Counter({ name: 'topas_runs_total', help: 'finished scenario runs by final state', labelNames: ['state'], registers: [this.registry] });

  queued(n: number): void {
    this.queueDepth.inc(n);
  }

  started(): void {
    this.queueDepth.dec();
    this.activeRunners.inc();
  }

  finished(state: RunState, durationMs: number): void {
    this.activeRunners.dec();
    this.duration.observe(durationMs / 1000);
    this.runs.inc({ state });
  }

  /** Runs that never started (interrupted batch) leave the queue. */
  dropQueued(n: number): void {
    this.queueDepth.dec(n);
  }
}

/**
 * The metrics of scenarios that run elsewhere (a cluster's runner), from what
 * comes back: all `total` are queued at first; a scenario starts when its
 * first event arrives (or when it ends, if none did) and ends once.
 */
export interface RemoteMetrics {
  seen(id: string): void;
  /** `fn`, telling seen() first: for a hook whose first argument is the scenario's id */
  tap<A extends unknown[]>(fn: (id: string, ...rest: A) => void): (id: string, ...rest: A) => void;
  ended(id: string, state: RunState, durationMs: number): void;
  close(): void;
}

export function remoteMetrics(metrics: RunMetrics, total: number): RemoteMetrics {
  metrics.queued(total);
  const started = new Set<string>();
  const ended = new Set<string>();
  const seen = (id: string) => {
    if (started.has(id) || started.size >= total) return;
    started.add(id);
    metrics.started();
  };
  return {
    seen,
    tap: (fn) => (id, ...rest) => {
      seen(id);
      fn(id, ...rest);
    },
    ended(id, state, durationMs) {
      if (ended.has(id)) return;
      seen(id);
      if (!started.has(id)) return;
      ended.add(id);
      metrics.finished(state, durationMs);
    },
    close() {
      metrics.dropQueued(total - started.size);
    },
  };
}

export interface MetricsServer {
  port: number;
  close(): Promise<void>;
}

/** Serves GET /metrics on 127.0.0.1 (port 0 = any free port). */
export async function serveMetrics(metrics: RunMetrics, port: number): Promise<MetricsServer> {
  const server = http.createServer((req, res) => {
    if (req.url?.split('?')[0] !== '/metrics') {
      res.writeHead(404).end('try /metrics\n');
      return;
    }
    metrics.registry
      .metrics()
      .then((body) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(body))
      .catch((err: Error) => res.writeHead(500).end(err.message));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  return {
    port: typeof address === 'object' && address ? address.port : port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
