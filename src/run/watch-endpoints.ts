import type { EndpointMap, Sut } from '../backends/backend';

const POLL_MS = 100;

/**
 * Keeps scenarios' endpoint maps current while a SUT changes under them
 * (rollouts, kills, heals): through the backend's own notifications when it
 * has them, else by comparing `endpointMap()` every 100 ms, which is well
 * inside the drain time backends give a replica leaving the rotation.
 */
export function watchEndpoints(sut: Sut, push: (map: EndpointMap) => void): () => void {
  if (sut.onEndpointsChange) return sut.onEndpointsChange(push);
  let last = JSON.stringify(sut.endpointMap());
  const timer = setInterval(() => {
    const map = sut.endpointMap();
    const text = JSON.stringify(map);
    if (text !== last) {
      last = text;
      push(map);
    }
  }, POLL_MS);
  timer.unref();
  return () => clearInterval(timer);
}
