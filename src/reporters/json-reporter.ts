import type { ReporterOptions } from './index';
import type { RunReport } from './run-report';
import { maskDeep } from '../spec/secrets';

/** Keys sorted at every level. */
function stable(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(stable);
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(value).sort()) out[k] = stable((value as Record<string, unknown>)[k]);
    return out;
  }
  return value;
}

/**
 * The RunReport as JSON with sorted keys (diff-friendly, same bytes for the
 * same run). Secrets are masked in strings and keys before encoding, and in
 * the JSON text after (escaped forms).
 */
export function jsonReporter(report: RunReport, opts: ReporterOptions): string {
  return opts.mask(JSON.stringify(stable(maskDeep(report, opts.mask)), null, 2)) + '\n';
}
