/** Wall clock with sub-ms precision, comparable across worker threads. */
export function wallNowMs(): number {
  return timeOrigin + performance.now();
}
// a getter call per read otherwise; it never changes within a thread
const timeOrigin = performance.timeOrigin;
