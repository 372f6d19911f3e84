import { TopasError } from '../errors';
import { didYouMean } from '../spec/did-you-mean';
import { parseDurationMs } from '../util/duration';
import { compilePathPattern, parseBandwidth, type ShapeChange } from './shape-state';

/**
 * Argument validation for the Lua `shape` module, as plain functions over the
 * values wasmoon hands to JS. Each returns a structured-cloneable ShapeCall that
 * a worker can send to the main thread (where ShapeController.applyCall runs it)
 * and throws TopasError SCENARIO_FAILED naming the call on bad arguments.
 */
export interface ShapeCall {
  service: string;
  change: ShapeChange;
}

export const SHAPE_FUNCTIONS = ['latency', 'bandwidth', 'loss', 'down', 'timeout', 'http_fault', 'reset'] as const;
export type ShapeFunctionName = (typeof SHAPE_FUNCTIONS)[number];

const USAGE: Record<ShapeFunctionName, string> = {
  latency: 'shape.latency(service, d [, {jitter=d}])',
  bandwidth: 'shape.bandwidth(service, "1mbit")',
  loss: 'shape.loss(service, probability)',
  down: 'shape.down(service)',
  timeout: 'shape.timeout(service)',
  http_fault: 'shape.http_fault(service, {status=503, rate=0.2 [, path=pattern]})',
  reset: 'shape.reset(service)',
};

function fail(fn: ShapeFunctionName, message: string, cause?: unknown): never {
  throw new TopasError('SCENARIO_FAILED', `shape.${fn}: ${message}`, { hint: `usage: ${USAGE[fn]}`, cause });
}

function serviceArg(fn: ShapeFunctionName, service: unknown): string {
  if (typeof service !== 'string' || service.trim() === '') fail(fn, `expected a service name as the first argument, got ${describe(service)}`);
  return service;
}

function describe(v: unknown): string {
  if (v === undefined || v === null) return 'nil';
  if (typeof v === 'string') return `"${v}"`;
  if (typeof v === 'object') return 'a table';
  return String(v);
}

/** A Lua table as a plain record (wasmoon gives objects; Maps tolerated); nil -> {}. */
function tableArg(fn: ShapeFunctionName, v: unknown, what: string, allowed: readonly string[]): Record<string, unknown> {
  if (v === undefined || v === null) return {};
  let rec: Record<string, unknown>;
  if (v instanceof Map) rec = Object.fromEntries(v);
  else if (typeof v === 'object' && !Array.isArray(v)) rec = v as Record<string, unknown>;
  else return fail(fn, `${what} must be a table, got ${describe(v)}`);
  for (const key of Object.keys(rec)) {
    if (!allowed.includes(key)) {
      const near = didYouMean(key, allowed);
      fail(fn, `unknown option "${key}"${near ? ` (did you mean "${near}"?)` : ''}; allowed: ${allowed.join(', ')}`);
    }
  }
  return rec;
}

function durationArg(fn: ShapeFunctionName, v: unknown, what: string): number {
  if (typeof v !== 'string' && typeof v !== 'number') fail(fn, `${what}: expected a duration like "200ms" or a number of seconds, got ${describe(v)}`);
  try {
    return parseDurationMs(v, what);
  } catch (err) {
    return fail(fn, (err as Error).message, err);
  }
}

function noExtraArgs(fn: ShapeFunctionName, args: unknown[], max: number): void {
  if (args.slice(max).some((a) => a !== undefined && a !== null)) fail(fn, `takes at most ${max} argument${max === 1 ? '' : 's'}, got ${args.length}`);
}

export function shapeLatency(service: unknown, delay: unknown, opts?: unknown): ShapeCall {
  const svc = serviceArg('latency', service);
  const delayMs = durationArg('latency', delay, 'delay');
  const o = tableArg('latency', opts, 'options', ['jitter']);
  const jitterMs = o.jitter === undefined ? 0 : durationArg('latency', o.jitter, 'jitter');
  return { service: svc, change: { kind: 'latency', delayMs, jitterMs } };
}

export function shapeBandwidth(service: unknown, rate: unknown): ShapeCall {
  const svc = serviceArg('bandwidth', service);
  if (typeof rate !== 'string' && typeof rate !== 'number') fail('bandwidth', `expected a rate like "1mbit" or "500kbit", got ${describe(rate)}`);
  try {
    return { service: svc, change: { kind: 'bandwidth', bytesPerSecond: parseBandwidth(rate, 'rate') } };
  } catch (err) {
    return fail('bandwidth', (err as Error).message, err);
  }
}

export function shapeLoss(service: unknown, probability: unknown): ShapeCall {
  const svc = serviceArg('loss', service);
  if (typeof probability !== 'number' || !Number.isFinite(probability) || probability < 0 || probability > 1) {
    fail('loss', `expected a probability between 0 and 1 (0.05 = 5% of new connections), got ${describe(probability)}`);
  }
  return { service: svc, change: { kind: 'loss', probability } };
}

export function shapeDown(service: unknown): ShapeCall {
  return { service: serviceArg('down', service), change: { kind: 'down' } };
}

export function shapeTimeout(service: unknown): ShapeCall {
  return { service: serviceArg('timeout', service), change: { kind: 'timeout' } };
}

export function shapeHttpFault(service: unknown, opts: unknown): ShapeCall {
  const svc = serviceArg('http_fault', service);
  if (opts === undefined || opts === null) fail('http_fault', 'expected an options table like {status=503, rate=0.2}');
  const o = tableArg('http_fault', opts, 'options', ['status', 'rate', 'path']);
  const status = o.status;
  if (typeof status !== 'number' || !Number.isInteger(status) || status < 200 || status > 599) {
    fail('http_fault', `status must be an HTTP status code from 200 to 599, got ${describe(status)}`);
  }
  const rate = o.rate === undefined ? 1 : o.rate;
  if (typeof rate !== 'number' || !Number.isFinite(rate) || rate < 0 || rate > 1) {
    fail('http_fault', `rate must be a number between 0 and 1 (0.2 = 20% of matching requests), got ${describe(rate)}`);
  }
  let path: string | undefined;
  if (o.path !== undefined) {
    if (typeof o.path !== 'string') fail('http_fault', `path must be a string (a glob like "/api/*" or a Lua pattern like "^/users/%w+$"), got ${describe(o.path)}`);
    try {
      compilePathPattern(o.path, 'path');
    } catch (err) {
      fail('http_fault', (err as Error).message, err);
    }
    path = o.path;
  }
  return { service: svc, change: path === undefined ? { kind: 'http_fault', status, rate } : { kind: 'http_fault', status, rate, path } };
}

export function shapeReset(service: unknown): ShapeCall {
  return { service: serviceArg('reset', service), change: { kind: 'reset' } };
}

/** Dispatch by Lua function name with the raw argument list (for an RPC bridge). */
export function parseShapeCall(name: string, args: unknown[]): ShapeCall {
  switch (name) {
    case 'latency':
      noExtraArgs('latency', args, 3);
      return shapeLatency(args[0], args[1], args[2]);
    case 'bandwidth':
      noExtraArgs('bandwidth', args, 2);
      return shapeBandwidth(args[0], args[1]);
    case 'loss':
      noExtraArgs('loss', args, 2);
      return shapeLoss(args[0], args[1]);
    case 'down':
      noExtraArgs('down', args, 1);
      return shapeDown(args[0]);
    case 'timeout':
      noExtraArgs('timeout', args, 1);
      return shapeTimeout(args[0]);
    case 'http_fault':
      noExtraArgs('http_fault', args, 2);
      return shapeHttpFault(args[0], args[1]);
    case 'reset':
      noExtraArgs('reset', args, 1);
      return shapeReset(args[0]);
    default: {
      const near = didYouMean(name, SHAPE_FUNCTIONS);
      throw new TopasError('SCENARIO_FAILED', `shape.${name} does not exist${near ? ` (did you mean shape.${near}?)` : ''}`, {
        hint: `the shape module has: ${SHAPE_FUNCTIONS.join(', ')}`,
      });
    }
  }
}
