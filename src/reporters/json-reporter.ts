import type { ReporterOptions } from './index';
import type { RunReport } from './run-report';

/** Keys sorted at every level and secrets masked inside string values (masking the JSON text could miss escaped forms). */
function stable(value: unknown, mask: (s: string) => string): unknown {
  if (typeof value === 'string') return mask(value);
  if (Array.isArray(value)) return value.map((v) => stable(v, mask));
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(value).sort()) {
      const v = (value as Record<string, unknown>)[k];
      if (v !== undefined) out[k] = stable(v, mask);
    }
    return out;
  }
  return value;
}

/** The RunReport as JSON with sorted keys (diff-friendly, same bytes for the same run). */
export function jsonReporter(report: RunReport, opts: ReporterOptions): string {
  return JSON.stringify(stable(report, opts.mask), null, 2) + '\n';
}
