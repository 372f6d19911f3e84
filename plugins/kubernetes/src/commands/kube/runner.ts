import { Flags } from '@oclif/core';
import { BaseCommand } from 'topas/runner';
import { TopasError } from 'topas';
import { runInCluster, runScheduled } from '../../in-cluster-runner';

/** The TestRun of this pod of an Indexed Job (the Job controller sets JOB_COMPLETION_INDEX). */
function indexedName(base: string, index: string | undefined): string {
  if (!index || !/^\d+$/.test(index)) throw new TopasError('INVALID_FLAGS', `kube runner --indexed: JOB_COMPLETION_INDEX is ${index === undefined ? 'not set' : JSON.stringify(index)} (not a pod of an Indexed Job?)`);
  return `${base}-${index}`;
}

/** The runner Job's command (the runner image): runs a TestRun's scenarios inside the cluster. Not for users. */
export default class KubeRunner extends BaseCommand {
  static override hidden = true;
  static override summary = 'Run a TestRun inside the cluster (the runner Job’s command)';
  static override flags = {
    testrun: Flags.string({ description: 'the TestRun to run, attached to the SUT the CLI stood up (in TOPAS_KUBE_NAMESPACE or the pod’s namespace)', exactlyOne: ['testrun', 'schedule'] }),
    indexed: Flags.boolean({ description: 'with --testrun, in a pod of an Indexed Job: runs the TestRun <testrun>-<JOB_COMPLETION_INDEX>' }),
    schedule: Flags.string({ description: 'the scheduled run (a CronJob’s ConfigMap) to run: stands the app up, runs, tears down', exactlyOne: ['testrun', 'schedule'] }),
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(KubeRunner);
    const code = flags.testrun ? await runInCluster(flags.indexed ? indexedName(flags.testrun, this.io.env.JOB_COMPLETION_INDEX) : flags.testrun, this.io) : await runScheduled(flags.schedule!, this.io);
    // the pod's end is the Job's: a client's keep-alive socket must not hold the process (and the Job) open
    setTimeout(() => process.exit(code), 3000).unref();
    this.finish(code);
  }
}
