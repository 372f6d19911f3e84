import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { DisplayState } from '../run/schedule-service';
import { DISPLAY_STATES, queueOf, type RunIndex } from './run-index';

/**
 * `/metrics` of the dashboard process: the stored runs by state and the queue
 * (read from the run index when scraped), the dashboard's own requests and
 * WebSocket clients, and the process's default metrics. A registry of its
 * own, so in-process tests never share one.
 */
export class DashboardMetrics {
  readonly registry = new Registry();
  readonly requests = new Counter({ name: 'topas_dashboard_requests_total', help: 'HTTP requests served by the dashboard, by route and status', labelNames: ['route', 'status'], registers: [this.registry] });
  readonly requestDuration = new Histogram({
    name: 'topas_dashboard_request_duration_seconds',
    help: 'time to answer a dashboard request, by route',
    labelNames: ['route'],
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2],
    registers: [this.registry],
  });
  readonly wsClients = new Gauge({ name: 'topas_dashboard_websocket_clients', help: 'open WebSocket connections (live logs, queue)', labelNames: ['stream'], registers: [this.registry] });
  readonly refused = new Counter({ name: 'topas_dashboard_refused_total', help: 'requests and WebSocket upgrades refused for a missing or wrong token', registers: [this.registry] });

  constructor(index: RunIndex) {
    // each gauge reads the index on scrape; one listing serves the gauges of one scrape
    let memo: { at: number; listed: ReturnType<RunIndex['list']> } | undefined;
    const listed = () => {
      const now = Date.now();
      if (!memo || now - memo.at > 250) memo = { at: now, listed: index.list() };
      return memo.listed;
    };
    new Gauge({
      name: 'topas_runs',
      help: 'stored runs by state (as `topas test status` shows them) and kind',
      labelNames: ['state', 'kind'],
      registers: [this.registry],
      collect() {
        const count = new Map<string, number>();
        for (const r of listed()) count.set(`${r.state}\n${r.kind}`, (count.get(`${r.state}\n${r.kind}`) ?? 0) + 1);
        this.reset();
        for (const state of DISPLAY_STATES as DisplayState[]) for (const kind of ['run', 'load']) this.set({ state, kind }, count.get(`${state}\n${kind}`) ?? 0);
      },
    });
    const queueGauge = (name: string, help: string, value: (q: ReturnType<typeof queueOf>) => number) =>
      new Gauge({
        name,
        help,
        registers: [this.registry],
        collect() {
          this.set(value(queueOf(listed())));
        },
      });
    queueGauge('topas_queue_length', 'scheduled runs waiting for their turn', (q) => q.pending.length);
    queueGauge('topas_queue_running', 'runs in progress', (q) => q.running.length);
    queueGauge('topas_queue_limit', 'runs of one app that run at once', (q) => q.limitPerApp);
    collectDefaultMetrics({ register: this.registry, prefix: 'topas_dashboard_' });
  }
}
