import KubeInstall from './kube/install';
import KubeRunner from './kube/runner';

/** The plugin's commands (oclif explicit discovery, like core's): `topas kube install`, and the runner Job's hidden `topas kube runner`. */
export const COMMANDS = {
  'kube:install': KubeInstall,
  'kube:runner': KubeRunner,
};
