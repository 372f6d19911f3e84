import { registerBackend } from './registry';
import { LocalBackend } from './local/local-backend';

/**
 * Built-in backends. Importing this module registers them; plugins (kubernetes)
 * register theirs through the `topas:backends` oclif hook.
 */
registerBackend('local', () => new LocalBackend());
// docker: required on first use, because loading testcontainers costs ~0.5s at every CLI start
registerBackend('docker', () => {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { DockerBackend } = require('./docker/docker-backend') as typeof import('./docker/docker-backend');
  return new DockerBackend();
});

