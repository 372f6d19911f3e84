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
