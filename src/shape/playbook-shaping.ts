import { parseShapeCall } from './shape-calls';
import type { ShapeController } from './shape-controller';
import { describeShape } from './shape-state';

/** A playbook's `shaping:` step (src/playbook/playbook.ts PlaybookShapeStep). */
export interface ShapeStep {
  atMs?: number;
  on?: string;
  service: string;
  action: string;
  args: unknown[];
}

export interface PlaybookShapingOptions {
  controller: ShapeController;
  /** resolves when the sync signal has been sent once (rejects when the playbook's sync group closes) */
  waitSignal: (name: string) => Promise<unknown>;
  log: (line: string) => void;
}

/**
 * Runs a playbook's declarative shaping while its instances run: `at:` steps on
 * a timer from the playbook's start, `on:` steps when the signal is first sent.
 * Every step is validated before anything starts (bad steps throw here). A step
 * that fails later (unknown service) is logged, not fatal: the instances decide
 * the outcome. `stop()` cancels what has not happened yet.
 */
export function startPlaybookShaping(steps: ShapeStep[], opts: PlaybookShapingOptions): { stop(): void } {
  const calls = steps.map((s) => ({ step: s, call: parseShapeCall(s.action, [s.service, ...s.args]) }));
  let stopped = false;
  const timers: NodeJS.Timeout[] = [];
  const apply = (i: number) => {
    if (stopped) return;
    const { step, call } = calls[i];
    try {
      const state = opts.controller.applyCall(call);
      opts.log(`shaping[${i}] ${step.on !== undefined ? `on ${step.on}` : `at ${step.atMs}ms`}: ${step.service} -> ${describeShape(state)}`);
    } catch (err) {
      opts.log(`shaping[${i}] failed: ${(err as Error).message}`);
    }
  };
  calls.forEach(({ step }, i) => {
    if (step.atMs !== undefined) {
      const t = setTimeout(() => apply(i), step.atMs);
      t.unref();
      timers.push(t);
    } else if (step.on !== undefined) {
      opts.waitSignal(step.on).then(
        () => apply(i),
        () => undefined,
      );
    }
  });
  return {
    stop() {
      stopped = true;
      for (const t of timers) clearTimeout(t);
    },
  };
}
