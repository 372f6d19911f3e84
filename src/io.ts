/**
 * Process globals, injected so the whole CLI runs in-process in tests.
 */
export interface Io {
  stdout: { write(chunk: string): unknown; isTTY?: boolean; columns?: number };
  stderr: { write(chunk: string): unknown; isTTY?: boolean };
  env: NodeJS.ProcessEnv;
  cwd: string;
  now(): number;
  /** Register for SIGINT/SIGTERM/SIGHUP; returns an unsubscribe function. */
  onSignal(handler: (signal: StopSignal) => void): () => void;
}

/**
 * The signals that stop a command, tearing down what it started. SIGHUP (the
 * terminal closed, an ssh session dropped) would otherwise kill the process
 * on the spot and leave the SUT running.
 */
export type StopSignal = 'SIGINT' | 'SIGTERM' | 'SIGHUP';
const STOP_SIGNALS: StopSignal[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

export function processIo(): Io {
  return {
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
    cwd: process.cwd(),
    now: () => Date.now(),
    onSignal(handler) {
      const h = (sig: NodeJS.Signals) => handler(sig as StopSignal);
      for (const s of STOP_SIGNALS) process.on(s, h);
      return () => {
        for (const s of STOP_SIGNALS) process.off(s, h);
      };
    },
  };
}
