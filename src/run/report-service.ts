import { TopasError } from '../errors';
import type { Io } from '../io';
import type { RunReport } from '../reporters/run-report';
import { maskSecrets } from '../spec/secrets';
import { checkReporterOutputs, renderReports } from './render-reports';
import { RunRecordStore } from './run-record';
import { recordDirFor } from './schedule-service';

/** `topas report <id>`: render a finished run from its record, with any reporter. */
export function reportRun(opts: { io: Io; id: string; app?: string; format: string; file?: string }): RunReport {
  checkReporterOutputs([{ name: opts.format, file: opts.file }], opts.io.cwd, '--output');
  const store = new RunRecordStore(recordDirFor(opts.io, opts.app));
  const record = store.readRun(opts.id);
  if (!Array.isArray(record.results)) throw new TopasError('FILE_NOT_FOUND', `run ${opts.id} holds no scenario results (kind ${String(record.kind ?? 'run')})`);
  const report: RunReport = {
    runId: record.runId,
    app: record.app,
    backend: record.backend,
    startedAt: record.startedAt ?? '',
    durationMs: record.durationMs ?? 0,
    state: record.state,
    results: record.results,
    playbooks: record.playbooks,
    error: record.error,
  };
  renderReports(report, [{ name: opts.format, file: opts.file }], { io: opts.io, mask: maskSecrets });
  return report;
}
