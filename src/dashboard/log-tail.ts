import * as fs from 'node:fs';
import type { LogLine } from '../run/scenario-types';

/** At most this much of log.ndjson is read per poll, so a huge log streams in pieces instead of one message. */
const READ_CHUNK_BYTES = 256 * 1024;

/**
 * Reads log.ndjson from where it left off: whole lines only (a line still
 * being appended waits for its newline), in file order, so every line is
 * delivered once and in the order it was written. Of the step events
 * (`source: event`) only the end of each step is kept, as one line
 * (`✓ step name`, `✗ step name: error`), so a run whose scenarios log nothing
 * still shows its progress.
 */
export class LogTail {
  private offset = 0;
  private partial: Buffer = Buffer.alloc(0);

  constructor(private readonly file: string) {}

  /** The complete lines appended since the last call; `more` when the chunk limit cut the read short. */
  read(): { lines: LogLine[]; more: boolean } {
    let fd: number;
    try {
      fd = fs.openSync(this.file, 'r');
    } catch {
      return { lines: [], more: false }; // no line written yet
    }
    let chunk: Buffer;
    let more = false;
    try {
      const size = fs.fstatSync(fd).size;
      if (size <= this.offset) return { lines: [], more: false };
      const n = Math.min(size - this.offset, READ_CHUNK_BYTES);
      more = size - this.offset > n;
      chunk = Buffer.alloc(n);
      const got = fs.readSync(fd, chunk, 0, n, this.offset);
      chunk = chunk.subarray(0, got);
      this.offset += got;
    } finally {
      fs.closeSync(fd);
    }
    // split on bytes: a chunk may end inside a multi-byte character
    const data = this.partial.length ? Buffer.concat([this.partial, chunk]) : chunk;
    const lastNl = data.lastIndexOf(0x0a);
    if (lastNl < 0) {
      this.partial = data;
      return { lines: [], more };
    }
    this.partial = Buffer.from(data.subarray(lastNl + 1));
    const lines: LogLine[] = [];
    for (const text of data.subarray(0, lastNl).toString('utf8').split('\n')) {
      if (!text.trim()) continue;
      try {
        const l = JSON.parse(text) as LogLine;
        if (l.source !== 'event') lines.push({ ts: l.ts, runId: l.runId, source: String(l.source), level: l.level, message: String(l.message) });
        else {
          const step = stepLine(l);
          if (step) lines.push(step);
        }
      } catch {
        // a damaged line is skipped, the rest still streams
      }
    }
    return { lines, more };
  }
}

/** A step-end event as a log line; other events (step starts, checks) are left out. */
function stepLine(l: LogLine): LogLine | undefined {
  let ev: { kind?: string; name?: unknown; state?: unknown; error?: { message?: unknown; location?: unknown } };
  try {
    ev = JSON.parse(String(l.message)) as typeof ev;
  } catch {
    return undefined;
  }
  if (ev.kind !== 'step-end') return undefined;
  const state = String(ev.state);
  const mark = state === 'passed' ? '✓' : state === 'failed' ? '✗' : '-';
  const where = ev.error?.location && !String(ev.error.message).includes(String(ev.error.location)) ? `${String(ev.error.location)}: ` : '';
  const error = ev.error?.message !== undefined ? `: ${where}${String(ev.error.message)}` : state === 'skipped' ? ' (skipped)' : '';
  return { ts: l.ts, runId: l.runId, source: 'step', level: state === 'failed' ? 'error' : 'info', message: `${mark} ${String(ev.name)}${error}` };
}
