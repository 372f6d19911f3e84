import * as net from 'node:net';

/** Sockets that read into a caller's buffer rather than a fresh allocation per read. */

/** The first `n` bytes of a shared read buffer in a buffer of their own (small ones come from Node's pool). */
export function copyOut(buf: Uint8Array, n: number): Buffer {
  const out = Buffer.allocUnsafe(n);
  out.set(n === buf.length ? buf : buf.subarray(0, n));
  return out;
}

/**
 * Node reads an accepted socket into a fresh allocation per read (a backing
 * store, an ArrayBuffer and a Buffer, then the stream's 'data' machinery):
 * a third of the unshaped relay's garbage, so of its GC pauses (bench/README.md,
 * proxy-tail). `onread` (a caller's buffer, as the upstream side uses) is only
 * an option of sockets Node connects itself; for accepted ones the same two
 * fields are set under their symbol keys, found once on a probe socket. Where a
 * Node version keeps them differently, the caller falls back to 'data' events.
 */
const userReadKeys = ((): { buffer: symbol; callback: symbol } | undefined => {
  const buffer = Buffer.alloc(1);
  const callback = () => true;
  // typed for connect() only, accepted by the constructor too
  const probe = new net.Socket({ onread: { buffer, callback } } as net.SocketConstructorOpts);
  const rec = probe as unknown as Record<symbol, unknown>;
  const keys = Object.getOwnPropertySymbols(probe);
  const b = keys.find((k) => rec[k] === buffer);
  const c = keys.find((k) => rec[k] === callback);
  probe.destroy();
  return b && c ? { buffer: b, callback: c } : undefined;
})();

/** Makes a paused accepted socket read into `buffer`; false when not possible (use 'data'). */
export function readIntoSharedBuffer(socket: net.Socket, buffer: Buffer, callback: (n: number, buf: Buffer) => boolean): boolean {
  const handle = (socket as unknown as { _handle?: { useUserBuffer?: (b: Uint8Array) => void } })._handle;
  if (!userReadKeys || typeof handle?.useUserBuffer !== 'function') return false;
  const rec = socket as unknown as Record<symbol, unknown>;
  rec[userReadKeys.buffer] = buffer;
  rec[userReadKeys.callback] = callback;
  handle.useUserBuffer(buffer);
  return true;
}
