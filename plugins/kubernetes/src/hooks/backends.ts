import { registerTransport, type BackendsHookOptions } from 'topas';

/**
 * The plugin's `topas:backends` hook: registers `kubernetes`. The client
 * library loads on first use, so other commands do not pay for it.
 */
export default async function backends(opts: BackendsHookOptions): Promise<void> {
  opts.register('kubernetes', () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { KubernetesBackend } = require('../kube-backend') as typeof import('../kube-backend');
    return new KubernetesBackend();
  });
  // `topas load` on this backend: its workers are pods of an Indexed Job, their messages go through the API server
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  registerTransport('pods', () => (require('../pod-transport') as typeof import('../pod-transport')).podTransport);
}
