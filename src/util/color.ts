/**
 * Whether to colour what goes to `stream`: NO_COLOR (no-color.org) turns
 * colour off, FORCE_COLOR (force-color.org; "0"/"false" mean off) turns it on
 * for pipes and CI logs too; otherwise colour only on a terminal. Cursor
 * movement of the live progress is not colour: it follows the terminal alone.
 */
export function colorEnabled(env: Record<string, string | undefined>, stream: { isTTY?: boolean }): boolean {
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return false;
  const force = env.FORCE_COLOR;
  if (force !== undefined) return !(force === '0' || force.toLowerCase() === 'false');
  return Boolean(stream.isTTY);
}

const ANSI = { red: 31, green: 32, yellow: 33, dim: 2, bold: 1 } as const;

export function paint(on: boolean, style: keyof typeof ANSI, s: string): string {
  return on ? `\x1b[${ANSI[style]}m${s}\x1b[0m` : s;
}
