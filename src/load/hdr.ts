/**
 * The parts of hdr-histogram-js a load test uses, required one by one: the
 * package's index also loads its WebAssembly build, pako through it, and the
 * log reader/writer — ~40 ms of start-up in the main thread and again in
 * every load worker, for code topas never calls.
 */
import Int32Histogram from 'hdr-histogram-js/dist/Int32Histogram';
import type { JsHistogram } from 'hdr-histogram-js/dist/JsHistogram';
// adds encodeIntoCompressedBase64 to JsHistogram and provides decoding
import { decompress, doDecode } from 'hdr-histogram-js/dist/JsHistogram.encoding';
import { inflateSync } from 'node:zlib';

export type Histogram = JsHistogram;

export function buildHistogram(lowestDiscernibleValue: number, highestTrackableValue: number, significantDigits: number): Histogram {
  const h = new Int32Histogram(lowestDiscernibleValue, highestTrackableValue, significantDigits);
  h.autoResize = false;
  return h;
}

/** HdrHistogram's V2 compressed base64 form, readable by every HdrHistogram port. */
export function encodeHistogram(h: Histogram): string {
  return h.encodeIntoCompressedBase64();
}

export function decodeHistogram(b64: string): Histogram {
  return doDecode(decompress(Buffer.from(b64.trim(), 'base64')), 32);
}

const V2_COMPRESSED_COOKIE_BASE = 0x1c849304;
const V2_COOKIE_BASE = 0x1c849303;
const V2_HEADER_BYTES = 40;

/** The counts-array methods of JsHistogram that are not in its typings (stable across its 2.x/3.x releases). */
interface CountsAccess {
  addToCountAtIndex(index: number, value: number): void;
  establishInternalTackingValues(lengthToCover?: number): void;
  countsArrayLength: number;
}

/**
 * Adds an encoded histogram (encodeHistogram's form) into `into` without
 * building a histogram for it: the coordinator merges a snapshot from every
 * worker every second, and making a whole counts array per part (23,552
 * slots at topas's range) cost more than everything else it does. The parts
 * and `into` share one layout (buildHistogram with the same arguments); a
 * part of another layout is decoded and added the slow way. Call
 * finishAdds(into) after the last part: min, max and the total are settled
 * then.
 */
export function addEncoded(into: Histogram, b64: string): void {
  const buf = Buffer.from(b64.trim(), 'base64');
  if (buf.length < 8 || (buf.readInt32BE(0) & ~0xf0) !== V2_COMPRESSED_COOKIE_BASE) throw new Error('not a V2 compressed HdrHistogram');
  const raw = inflateSync(buf.subarray(8, 8 + buf.readInt32BE(4)));
  const h = into as unknown as CountsAccess & Histogram;
  const sameLayout =
    raw.length >= V2_HEADER_BYTES &&
    (raw.readInt32BE(0) & ~0xf0) === V2_COOKIE_BASE &&
    // bytes 8-11, the normalizing index offset, are ignored as hdr-histogram-js's own decoder does (it writes 1)
    raw.readInt32BE(12) === into.numberOfSignificantValueDigits &&
    Number(raw.readBigInt64BE(16)) === into.lowestDiscernibleValue &&
    Number(raw.readBigInt64BE(24)) === into.highestTrackableValue;
  if (!sameLayout) {
    into.add(doDecode(raw, 32));
    return;
  }
  const end = Math.min(raw.length, V2_HEADER_BYTES + raw.readInt32BE(4));
  const limit = h.countsArrayLength;
  let pos = V2_HEADER_BYTES;
  let index = 0;
  while (pos < end && index < limit) {
    // ZigZag LEB128 (at most 9 bytes): counts, or a negative run of empty slots
    let b = raw[pos++];
    let v = b & 0x7f;
    let scale = 128;
    while (b & 0x80 && pos < end) {
      b = raw[pos++];
      v += (b & 0x7f) * scale;
      scale *= 128;
    }
    const n = v % 2 === 0 ? v / 2 : -(v + 1) / 2;
    if (n < 0) index -= n;
    else {
      if (n > 0) h.addToCountAtIndex(index, n);
      index++;
    }
  }
}

/** After addEncoded: recomputes min, max and the total count from the counts. */
export function finishAdds(into: Histogram): void {
  (into as unknown as CountsAccess).establishInternalTackingValues();
}
