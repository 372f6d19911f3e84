import type { AppSpec } from './app-spec';
import { TopasError } from '../errors';

/** name -> names it depends on, in spec order: databases first, then services. */
function dependencyGraph(spec: AppSpec): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const db of spec.databases) graph.set(db.name, []);
  for (const svc of spec.services) graph.set(svc.name, [...svc.dependsOn]);
  return graph;
}

type Graph = ReadonlyMap<string, readonly string[]> | Readonly<Record<string, readonly string[]>>;

function toMap(graph: Graph): ReadonlyMap<string, readonly string[]> {
  return graph instanceof Map ? graph : new Map(Object.entries(graph));
}

/**
 * One dependency cycle as a closed path (`['api', 'worker', 'api']`), or
 * undefined. Edges to names that are not nodes are ignored (validation reports
 * those separately).
 */
export function findCycle(graph: Graph): string[] | undefined {
  const g = toMap(graph);
  const WHITE = 0;
  const GREY = 1;
  const BLACK = 2;
  const color = new Map<string, number>();
  for (const n of g.keys()) color.set(n, WHITE);
  // Iterative DFS so that a long dependency chain cannot overflow the stack.
  for (const root of g.keys()) {
    if (color.get(root) !== WHITE) continue;
    const stack: { node: string; next: number }[] = [{ node: root, next: 0 }];
    color.set(root, GREY);
    while (stack.length > 0) {
      const top = stack[stack.length - 1];
      const deps = g.get(top.node) ?? [];
      if (top.next >= deps.length) {
        color.set(top.node, BLACK);
        stack.pop();
        continue;
      }
      const dep = deps[top.next++];
      const c = color.get(dep);
      if (c === undefined || c === BLACK) continue;
      if (c === GREY) {
        const from = stack.findIndex((f) => f.node === dep);
        return [...stack.slice(from).map((f) => f.node), dep];
      }
      color.set(dep, GREY);
      stack.push({ node: dep, next: 0 });
    }
  }
  return undefined;
}

function checkedGraph(spec: AppSpec): Map<string, string[]> {
  const graph = dependencyGraph(spec);
  for (const [name, deps] of graph) {
    for (const d of deps) {
      if (!graph.has(d)) {
        throw new TopasError('INVALID_APP_SPEC', `"${name}" depends on "${d}", which the app spec does not define`);
      }
    }
  }
  const cycle = findCycle(graph);
  if (cycle) {
    throw new TopasError('INVALID_APP_SPEC', `dependency cycle ${cycle.join(' -> ')}`, {
      problems: [{ path: 'services', message: `dependency cycle ${cycle.join(' -> ')}` }],
    });
  }
  return graph;
}

/** All services and databases, each after everything it depends on; ties keep spec order (databases first). */
export function dependencyOrder(spec: AppSpec): string[] {
  const graph = checkedGraph(spec);
  const done = new Set<string>();
  const order: string[] = [];
  while (order.length < graph.size) {
    for (const [name, deps] of graph) {
      if (done.has(name) || !deps.every((d) => done.has(d))) continue;
      done.add(name);
      order.push(name);
      break;
    }
  }
  return order;
}

/**
 * Start every service and database as soon as everything it depends on has
 * started: maximum parallelism, not level by level. On the first failure (or
 * abort) nothing new is launched; the starts in flight are allowed to settle
 * and then the first error is rethrown, so the caller can tear down knowing
 * nothing is still starting.
 */
export function startInDependencyOrder(
  spec: AppSpec,
  startOne: (name: string) => Promise<void>,
  opts: { signal?: AbortSignal } = {},
): Promise<void> {
  const graph = checkedGraph(spec);
  const { signal } = opts;
  return new Promise<void>((resolve, reject) => {
    const launched = new Set<string>();
    const started = new Set<string>();
    let inFlight = 0;
    let failed = false;
    let firstError: unknown;
    let settled = false;

    const fail = (err: unknown) => {
      if (failed) return;
      failed = true;
      firstError = err;
    };
    const onAbort = () => {
      const reason: unknown = signal?.reason;
      fail(reason instanceof TopasError ? reason : new TopasError('INTERRUPTED', 'start interrupted', { cause: reason }));
      finishIfIdle();
    };
    const finishIfIdle = () => {
      if (settled || inFlight > 0) return;
      if (failed) {
        settled = true;
        signal?.removeEventListener('abort', onAbort);
        reject(firstError);
      } else if (started.size === graph.size) {
        settled = true;
        signal?.removeEventListener('abort', onAbort);
        resolve();
      }
    };
    const launchReady = () => {
      if (failed) return;
      for (const [name, deps] of graph) {
        if (launched.has(name) || !deps.every((d) => started.has(d))) continue;
        launched.add(name);
        inFlight++;
        // Promise.resolve().then: a synchronous throw in startOne becomes a rejection too.
        Promise.resolve()
          .then(() => startOne(name))
          .then(
            () => {
              started.add(name);
            },
            (err: unknown) => fail(err),
          )
          .finally(() => {
            inFlight--;
            launchReady();
            finishIfIdle();
          });
      }
    };

    if (signal?.aborted) {
      onAbort();
      return;
    }
    signal?.addEventListener('abort', onAbort, { once: true });
    launchReady();
    finishIfIdle();
  });
}
