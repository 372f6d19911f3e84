import type { LoadPlan } from '../load/load-plan';
import type { FlowModel } from './model';

export const EXPORT_TARGETS = ['k6', 'locust', 'artillery'] as const;
export type ExportTarget = (typeof EXPORT_TARGETS)[number];

/** What a target printer gets: the flow, the effective plan (options + load flags), and what was left out. */
export interface ExportInput {
  /** the scenario as the user named it, for the header comment */
  source: string;
  model: FlowModel;
  plan: LoadPlan;
  /** `file:line: what`, already formatted (printed in the script's header) */
  skipped: string[];
  /** the output file, when there is one (Artillery writes its processor beside it) */
  outFile?: string;
}

export interface ExportResult {
  /** the main script */
  text: string;
  /** more files to write beside it (name relative to the main file's folder -> text) */
  extra?: Record<string, string>;
  /** thresholds or features this target cannot express, `file:line: what` */
  skipped: string[];
}
