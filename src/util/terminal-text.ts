/**
 * Text a scenario controls (log lines, step and check names, error messages)
 * on its way to a terminal or a stored record. A scenario must not be able to
 * drive the user's terminal (clear it, retitle it, rewrite earlier lines with
 * `\r` or cursor moves, fake a "PASS") nor blow a report up to gigabytes.
 */

/** Longest name (step, check, scenario) kept; longer ones are cut, saying so. */
export const MAX_NAME_CHARS = 1024;
/** Longest message (log line, error message, traceback) kept. */
export const MAX_MESSAGE_CHARS = 64 * 1024;

// C0 controls but \t and \n, DEL, C1 controls (\x9b is a one-byte CSI), and
// the bidi overrides that reorder what a terminal shows
const CONTROL = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]/g;
const CONTROL_OR_NEWLINE = /[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]/g;

function visible(c: string): string {
  if (c === '\n') return '\\n';
  if (c === '\t') return '\\t';
  if (c === '\r') return '\\r';
  const n = c.charCodeAt(0);
  return n > 0xff ? `\\u${n.toString(16).padStart(4, '0')}` : `\\x${n.toString(16).padStart(2, '0')}`;
}

/** Control characters shown as `\x1b`-style escapes; a multi-line text keeps its newlines and tabs. */
export function escapeControl(text: string, opts: { multiline?: boolean } = {}): string {
  return text.replace(opts.multiline ? CONTROL : CONTROL_OR_NEWLINE, visible);
}

/** `text` cut to `maxChars`, the cut said in the text (never in the middle of a surrogate pair). */
export function clipText(text: string, maxChars: number): string {
  if (typeof text !== 'string' || text.length <= maxChars) return text;
  let end = maxChars;
  const c = text.charCodeAt(end - 1);
  if (c >= 0xd800 && c <= 0xdbff) end--;
  return `${text.slice(0, end)}… (${text.length - end} more characters cut)`;
}
