import * as fs from 'node:fs';
import * as path from 'node:path';
import { ServiceAgent } from './service-agent';

/** One Postman test (pm.test) of one request execution. */
export interface PostmanAssertion {
  name: string;
  passed: boolean;
  skipped: boolean;
  message?: string;
}

/** One request as it ran (an iteration runs every request once). */
export interface PostmanExecution {
  /** the request's name in the collection (folders not included) */
  name: string;
  /** 1-based */
  iteration: number;
  method: string;
  url: string;
  /** 0 when no response came (connection error, timeout) */
  code: number;
  timeMs: number;
  /** connection error or a script exception */
  error?: string;
  assertions: PostmanAssertion[];
}

export interface PostmanRunReport {
  passed: boolean;
  requests: number;
  assertions: number;
  failures: { name: string; message: string }[];
  executions: PostmanExecution[];
}

export interface PostmanRunOptions {
  collection: string | object;
  environment?: string | object;
  folder?: string | string[];
  iterations?: number;
  /** override / add environment variables */
  vars?: Record<string, string>;
  /** net's URL resolver: service-name hosts to endpoints */
  resolveUrl: (url: string) => string;
  /** per request */
  timeoutRequestMs?: number;
  signal?: AbortSignal;
}

interface NewmanEmitter {
  on(ev: string, fn: (err: (Error & { test?: string }) | null, args: any) => void): NewmanEmitter;
}
type NewmanRun = (options: Record<string, unknown>, cb: (err: Error | null, summary: any) => void) => NewmanEmitter;

let newmanRun: NewmanRun | undefined;
function newman(): NewmanRun {
  // newman pulls in a large tree (postman-runtime, sandbox): load it on first use only
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  newmanRun ??= (require('newman') as { run: NewmanRun }).run;
  return newmanRun;
}

/** Reads a collection or environment file as JSON with a message naming the file. */
export function readPostmanJson(file: string, what: string): object {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(`${what} ${file}: ${(err as Error).message}`);
  }
  try {
    return JSON.parse(text) as object;
  } catch (err) {
    throw new Error(`${what} ${file}: not valid JSON (${(err as Error).message})`);
  }
}

/** Names of the top-level folders and requests of a collection, for "no folder named X" errors. */
export function collectionFolders(collection: object): string[] {
  const items = (collection as { item?: { name?: string; item?: unknown }[] }).item ?? [];
  return items.filter((i) => Array.isArray(i.item)).map((i) => String(i.name));
}

/**
 * Runs a Postman collection with newman, in-process, without reporters, and
 * collects every request and every test it ran. Requests to a service name
 * go to that service (see ServiceAgent). Never rejects for failed tests or
 * requests (they are in the report); rejects when the collection cannot run.
 */
export async function runPostmanCollection(opts: PostmanRunOptions): Promise<PostmanRunReport> {
  const collection = typeof opts.collection === 'string' ? readPostmanJson(opts.collection, 'collection') : opts.collection;
  const environment = typeof opts.environment === 'string' ? readPostmanJson(opts.environment, 'environment') : opts.environment;
  const folders = opts.folder === undefined ? undefined : Array.isArray(opts.folder) ? opts.folder : [opts.folder];
  if (folders) {
    const known = collectionFolders(collection);
    const missing = folders.filter((f) => !known.includes(f) && !hasItemNamed(collection, f));
    if (missing.length > 0) throw new Error(`no folder or request named ${missing.map((f) => `"${f}"`).join(', ')} in the collection${known.length ? ` (folders: ${known.join(', ')})` : ''}`);
  }
  const agent = new ServiceAgent(opts.resolveUrl);
  const executions: PostmanExecution[] = [];
  const byCursor = new Map<string, PostmanExecution>();
  const pendingErrors = new Map<string, string>();
  const key = (cursor: { ref?: string; iteration?: number; position?: number }) => `${cursor.iteration}:${cursor.position}:${cursor.ref}`;
  // a pre-request script may fail before its request exists
  const orphanErrors: string[] = [];

  const onAbort = () => agent.close();
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    await new Promise<void>((resolve, reject) => {
      const emitter = newman()(
        {
          collection,
          environment,
          folder: folders,
          iterationCount: opts.iterations ?? 1,
          envVar: Object.entries(opts.vars ?? {}).map(([k, value]) => ({ key: k, value: String(value) })),
          requestAgents: { http: agent },
          timeoutRequest: opts.timeoutRequestMs ?? 60_000,
          workingDir: typeof opts.collection === 'string' ? path.dirname(opts.collection) : process.cwd(),
          insecureFileRead: false,
          // no reporters: the report is built from the events below
          reporters: [],
        },
        (err) => (err ? reject(err) : resolve()),
      );
      emitter.on('request', (err, a) => {
        const item = a.item as { name: string };
        const req = a.request as { method?: string; url?: { toString(): string } } | undefined;
        const res = a.response as { code?: number; responseTime?: number } | undefined;
        const ex: PostmanExecution = {
          name: item.name,
          iteration: (a.cursor.iteration ?? 0) + 1,
          method: req?.method ?? 'GET',
          url: req?.url?.toString() ?? '',
          code: res?.code ?? 0,
          timeMs: res?.responseTime ?? 0,
          assertions: [],
          ...(err ? { error: err.message } : {}),
        };
        const early = pendingErrors.get(key(a.cursor));
        if (early) ex.error = ex.error ? `${ex.error}; ${early}` : early;
        pendingErrors.delete(key(a.cursor));
        executions.push(ex);
        byCursor.set(key(a.cursor), ex);
      });
      emitter.on('assertion', (err, a) => {
        const ex = byCursor.get(key(a.cursor));
        const assertion: PostmanAssertion = { name: String(a.assertion), passed: !err && !a.skipped, skipped: !!a.skipped, ...(err ? { message: err.message } : {}) };
        if (a.skipped) assertion.passed = true;
        if (ex) ex.assertions.push(assertion);
      });
      emitter.on('exception', (_err, a) => {
        const k = a?.cursor ? key(a.cursor) : '';
        const ex = byCursor.get(k);
        const msg = `script error: ${a?.error?.message ?? 'unknown'}`;
        if (ex) ex.error = ex.error ? `${ex.error}; ${msg}` : msg;
        else if (k) pendingErrors.set(k, msg);
        else orphanErrors.push(msg);
      });
    });
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
    agent.close();
  }
  if (opts.signal?.aborted) throw new Error('cancelled');

  const failures: { name: string; message: string }[] = [];
  let assertions = 0;
  for (const ex of executions) {
    if (ex.error) failures.push({ name: ex.name, message: ex.error });
    for (const a of ex.assertions) {
      assertions++;
      if (!a.passed) failures.push({ name: `${ex.name} › ${a.name}`, message: a.message ?? 'failed' });
    }
  }
  for (const msg of [...pendingErrors.values(), ...orphanErrors]) failures.push({ name: 'collection', message: msg });
  return { passed: failures.length === 0, requests: executions.length, assertions, failures, executions };
}

function hasItemNamed(node: object, name: string): boolean {
  for (const it of (node as { item?: object[] }).item ?? []) {
    if ((it as { name?: string }).name === name || hasItemNamed(it, name)) return true;
  }
  return false;
}
