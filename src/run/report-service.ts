import * as fs from 'node:fs';
import { TopasError } from '../errors';
import type { Io } from '../io';
import type { RunReport } from '../reporters/run-report';
import { maskSecrets, registerSpecSecrets } from '../spec/secrets';
import { checkReporterOutputs, renderReports } from './render-reports';
import { reportFromRecord } from './record-report';
import { RunRecordStore } from './run-record';
import { recordDirFor } from './schedule-service';

/**
 * `topas report <id>`: render a finished run from its record, with any reporter.
 * Records are masked when written; the spec's secrets are masked again here,
 * for records an older topas wrote unmasked.
 */
export async function reportRun(opts: { io: Io; id: string; app?: string; format: string; file?: string }): Promise<RunReport> {
  checkReporterOutputs([{ name: opts.format, file: opts.file }], opts.io.cwd, '--output');
  const store = new RunRecordStore(recordDirFor(opts.io, opts.app));
  const record = store.readRun(opts.id);
  if (!Array.isArray(record.results) && record.kind !== 'load') throw new TopasError('FILE_NOT_FOUND', `run ${opts.id} holds no results (kind ${String(record.kind ?? 'run')})`);
  await registerRecordSpecSecrets(record.specFile, opts.io);
  const report = reportFromRecord(record, { logs: store.readLog(opts.id) });
  renderReports(report, [{ name: opts.format, file: opts.file }], { io: opts.io, mask: maskSecrets });
  return report;
}

async function registerRecordSpecSecrets(specFile: unknown, io: Io): Promise<void> {
  if (typeof specFile !== 'string' || !fs.existsSync(specFile)) return;
  try {
    const { loadAppSpec } = await import('../spec/load-app-spec');
    registerSpecSecrets(await loadAppSpec(specFile, { env: io.env, cwd: io.cwd }));
  } catch {
    // a spec that no longer loads: the record was masked when it was written
  }
}
