import type { SerializedError } from '../errors';
import { MAX_MESSAGE_CHARS, MAX_NAME_CHARS, clipText } from '../util/terminal-text';
import type { CheckTally, ScenarioEvent, ScenarioResult } from './scenario-types';

/**
 * What a scenario reported, masked and then cut to size, as it reaches the
 * run: a 1 MiB step name or a 50 MiB error message must not become a 200 MiB
 * report. Masking comes first, so a cut can never leave half a secret behind.
 */
type Mask = (s: string) => string;

const name = (s: string, mask: Mask) => clipText(mask(s), MAX_NAME_CHARS);
const message = (s: string, mask: Mask) => clipText(mask(s), MAX_MESSAGE_CHARS);

function boundedError(e: SerializedError, mask: Mask): SerializedError {
  const out: SerializedError = { ...e, message: message(e.message, mask) };
  if (e.stack !== undefined) out.stack = message(e.stack, mask);
  if (e.hint !== undefined) out.hint = message(e.hint, mask);
  if (e.location !== undefined) out.location = name(e.location, mask);
  return out;
}

const boundedChecks = (cs: CheckTally[], mask: Mask) => cs.map((c) => ({ ...c, name: name(c.name, mask) }));

export function boundedResult(r: ScenarioResult, mask: Mask): ScenarioResult {
  return {
    ...r,
    steps: r.steps.map((s) => ({ ...s, name: name(s.name, mask), checks: boundedChecks(s.checks, mask), ...(s.error ? { error: boundedError(s.error, mask) } : {}) })),
    checks: boundedChecks(r.checks, mask),
    ...(r.error ? { error: boundedError(r.error, mask) } : {}),
  };
}

export function boundedEvent(ev: ScenarioEvent, mask: Mask): ScenarioEvent {
  if (ev.kind === 'step-end' && ev.error) return { ...ev, name: name(ev.name, mask), error: boundedError(ev.error, mask) };
  return { ...ev, name: name(ev.name, mask) };
}

export const boundedMessage = message;
