import * as path from 'node:path';
import type { Io } from '../../src/io';
import { runCli } from '../../src/cli/main';

export const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
  elapsedMs: number;
}

/** An Io that captures output and lets a test deliver signals. */
export function captureIo(opts: { cwd?: string; env?: NodeJS.ProcessEnv; tty?: boolean } = {}) {
  let stdout = '';
  let stderr = '';
  const handlers = new Set<(s: 'SIGINT' | 'SIGTERM') => void>();
  const io: Io = {
    stdout: { write: (c: string) => ((stdout += c), true), isTTY: opts.tty ?? false },
    stderr: { write: (c: string) => ((stderr += c), true), isTTY: opts.tty ?? false },
    env: opts.env ?? { ...process.env },
    cwd: opts.cwd ?? REPO_ROOT,
    now: () => Date.now(),
    onSignal(h) {
      handlers.add(h);
      return () => handlers.delete(h);
    },
  };
  return {
    io,
    get stdout() {
      return stdout;
    },
    get stderr() {
      return stderr;
    },
    signal(sig: 'SIGINT' | 'SIGTERM' = 'SIGINT') {
      for (const h of [...handlers]) h(sig);
    },
  };
}

/** Runs the CLI in-process. */
export async function cli(argv: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<CliRun> {
  const cap = captureIo(opts);
  const t0 = Date.now();
  const code = await runCli(argv, cap.io);
  return { code, stdout: cap.stdout, stderr: cap.stderr, elapsedMs: Date.now() - t0 };
}
