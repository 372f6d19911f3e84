import { Flags } from '@oclif/core';
import { BaseCommand } from 'topas/runner';
import { serveLoadWorker } from '../../pod-worker';

/** A load worker pod's command (the runner image, an Indexed Job of `topas load --backend kubernetes`). Not for users. */
export default class KubeLoadWorker extends BaseCommand {
  static override hidden = true;
  static override summary = 'Serve as a load worker of a LoadRun inside the cluster (the worker pods’ command)';
  static override flags = {
    loadrun: Flags.string({ description: 'the LoadRun this pod works for (its channel ConfigMap is <loadrun>-w<index>)', required: true }),
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(KubeLoadWorker);
    await serveLoadWorker(flags.loadrun, this.io);
    // the worker serves until the CLI shuts it down (or the pod goes): the command must not end the process
    await new Promise<never>(() => undefined);
  }
}
