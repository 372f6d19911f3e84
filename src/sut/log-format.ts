/**
 * One log format for every backend: a service with one replica shows its
 * output as it is; with more, each line carries its replica, `[api-2] ...`
 * (the prefix start-up errors use too, src/backends/start-errors.ts).
 */
export function replicaPrefix(service: string, index: number): string {
  return `[${service}-${index}]`;
}

/** What `sut.logs(name)` returns without `tail`: the last lines of each replica. */
export const DEFAULT_LOG_TAIL = 100;

/** The last `n` lines of `text` (a final newline does not count as a line). */
export function tailLines(text: string, n: number): string {
  const lines = text.split('\n');
  if (lines.length && lines[lines.length - 1] === '') lines.pop();
  return lines.slice(-n).join('\n');
}

/** The logs of a service: each replica's last `tail` lines, ordered by replica, prefixed when there are several. */
export function mergeReplicaLogs(service: string, parts: Array<{ index: number; text: string }>, tail: number): string {
  if (parts.length === 1) return tailLines(parts[0].text, tail);
  return parts
    .map((p) => {
      const text = tailLines(p.text, tail);
      return text ? text.split('\n').map((l) => `${replicaPrefix(service, p.index)} ${l}`).join('\n') : '';
    })
    .filter((t) => t !== '')
    .join('\n');
}
