import { TopasError } from '../errors';

const UNITS_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/**
 * Durations are strings ("250ms", "30s", "2m", "1m30s") or numbers of seconds.
 * Returns milliseconds; throws INVALID_FLAGS on anything else.
 */
export function parseDurationMs(value: string | number, what = 'duration'): number {
  if (typeof value === 'number') {
    if (!Number.isFinite(value) || value < 0) throw new TopasError('INVALID_FLAGS', `${what}: expected a non-negative duration, got ${value}`);
    return value * 1000;
  }
  const s = value.trim();
  if (/^\d+(\.\d+)?$/.test(s)) return Number(s) * 1000;
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h)/gy;
  let total = 0;
  let consumed = 0;
  let m: RegExpExecArray | null;
  while ((m = re.exec(s)) !== null) {
    total += Number(m[1]) * UNITS_MS[m[2]];
    consumed = re.lastIndex;
  }
  if (consumed === 0 || consumed !== s.length) {
    throw new TopasError('INVALID_FLAGS', `${what}: expected a duration like "250ms", "30s" or "2m", got "${value}"`);
  }
  return total;
}

export function tryParseDurationMs(value: unknown): number | undefined {
  if (typeof value !== 'string' && typeof value !== 'number') return undefined;
  try {
    return parseDurationMs(value);
  } catch {
    return undefined;
  }
}

export function formatDurationMs(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)}s`;
  const m = Math.floor(ms / 60_000);
  const s = Math.round((ms % 60_000) / 1000);
  return `${m}m${s}s`;
}
