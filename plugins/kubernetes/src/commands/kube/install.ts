import { BaseCommand, clusterFlags, withClusterFlags } from 'topas/runner';
import { clusterOptionsFromEnv, connect } from '../../cluster';
import { RUNNER_ACCOUNT, TESTRUN, installTestRun } from '../../testrun';

/** `topas kube install`: the TestRun CRD and the runner's RBAC (a run does the same on first use, when allowed). */
export default class KubeInstall extends BaseCommand {
  static override summary = 'Install the TestRun CRD and the runner’s ServiceAccount, Role and RoleBinding';
  static override description =
    'Cluster mode (`topas run --backend kubernetes`) runs scenarios in a Job that reports through a TestRun custom resource. This installs its CustomResourceDefinition (cluster-wide) and, in the namespace, the ServiceAccount, Role and RoleBinding the runner uses. Idempotent; the first run does it too when the user may.';
  static override examples = ['<%= config.bin %> kube install', '<%= config.bin %> kube install --namespace e2e --context staging'];
  static override flags = { ...clusterFlags };

  async run(): Promise<void> {
    const { flags } = await this.parse(KubeInstall);
    const io = withClusterFlags(this.io, flags);
    const result = await installTestRun(connect(clusterOptionsFromEnv(io.env)), (l) => this.err(l));
    if (flags.json) {
      this.outJson({ crd: `${TESTRUN.plural}.${TESTRUN.group}`, crdState: result.crd, namespace: result.namespace, serviceAccount: RUNNER_ACCOUNT });
      return;
    }
    this.out(`TestRun CRD ${TESTRUN.plural}.${TESTRUN.group}: ${result.crd}; runner RBAC (ServiceAccount/Role/RoleBinding ${RUNNER_ACCOUNT}) in namespace ${result.namespace}`);
  }
}
