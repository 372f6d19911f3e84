import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Io } from '../io';
import { getReporter } from '../reporters/index';
import type { RunReport } from '../reporters/run-report';
import { TopasError } from '../errors';

export interface ReporterRequest {
  name: string;
  /** write here instead of stdout */
  file?: string;
}

/** `--reporter name[:path]`, repeatable; validated before anything runs. */
export function parseReporterFlags(values: string[], json: boolean): ReporterRequest[] {
  const requests = values.map((v) => {
    const i = v.indexOf(':');
    return i < 0 ? { name: v } : { name: v.slice(0, i), file: v.slice(i + 1) };
  });
  for (const r of requests) getReporter(r.name); // throws INVALID_FLAGS with the known names
  const toStdout = requests.filter((r) => !r.file);
  if (json) {
    if (toStdout.some((r) => r.name !== 'json')) throw new TopasError('INVALID_FLAGS', '--json prints JSON on stdout; give other reporters a file (--reporter junit:report.xml)');
    return [...requests.filter((r) => r.file), { name: 'json' }];
  }
  if (toStdout.length === 0) requests.unshift({ name: 'table' });
  return requests;
}

/**
 * Every reporter masks what it renders before encoding it (a secret escaped
 * for XML or JSON no longer looks like itself); its output is masked once more
 * here, for the encoded forms and for reporters registered from elsewhere.
 */
export function renderReports(report: RunReport, requests: ReporterRequest[], ctx: { io: Io; mask: (s: string) => string }): void {
  for (const r of requests) {
    const text = ctx.mask(getReporter(r.name)(report, { color: Boolean(ctx.io.stdout.isTTY) && !r.file, mask: ctx.mask }));
    if (r.file) {
      const file = path.resolve(ctx.io.cwd, r.file);
      fs.mkdirSync(path.dirname(file), { recursive: true });
      fs.writeFileSync(file, text.endsWith('\n') ? text : `${text}\n`);
    } else {
      ctx.io.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
    }
  }
}
