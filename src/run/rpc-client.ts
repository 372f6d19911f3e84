import { deserializeError, type SerializedError } from '../errors';

/**
 * The worker side of module calls served by the main thread: each call gets an
 * id, goes out as an `rpc-call`, and settles when its `rpc-result` comes back.
 */
export class RpcClient {
  private readonly calls = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private nextCallId = 1;

  constructor(private readonly post: (msg: { type: 'rpc-call'; runId: string; callId: number; method: string; args: unknown[] }) => void) {}

  call(runId: string, method: string, args: unknown[]): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const callId = this.nextCallId++;
      this.calls.set(callId, { resolve, reject });
      this.post({ type: 'rpc-call', runId, callId, method, args });
    });
  }

  settle(msg: { callId: number; ok: true; value: unknown } | { callId: number; ok: false; error: SerializedError }): void {
    const c = this.calls.get(msg.callId);
    if (!c) return;
    this.calls.delete(msg.callId);
    if (msg.ok) c.resolve(msg.value);
    else c.reject(deserializeError(msg.error));
  }
}
