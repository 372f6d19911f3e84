import KubeInstall from './kube/install';
import KubeRunner from './kube/runner';
import KubeLoadWorker from './kube/load-worker';

/** The plugin's commands (oclif explicit discovery, like core's): `topas kube install`, and the hidden `topas kube runner` (the runner Job's) and `topas kube load-worker` (load worker pods'). */
export const COMMANDS = {
  'kube:install': KubeInstall,
  'kube:runner': KubeRunner,
  'kube:load-worker': KubeLoadWorker,
};
