import { sleep } from '../readiness';
import type { Engine } from './engine';
import { LABEL } from './labels';
import { TEMPLATE_BUILD_LABEL } from './postgres-template';

/** Force-remove the containers of a run, then its network(s). Returns what was removed. */
export async function removeRun(engine: Engine, runId: string): Promise<{ containers: number; networks: number }> {
  const docker = engine.docker;
  const filter = { label: [`${LABEL.run}=${runId}`] };
  // and a database template the run was still making (postgres-template.ts)
  const builds = await docker.listContainers({ all: true, filters: { label: [`${TEMPLATE_BUILD_LABEL}=${runId}`] } });
  const containers = [...(await docker.listContainers({ all: true, filters: filter })), ...builds];
  await Promise.all(
    containers.map((c) =>
      docker
        .getContainer(c.Id)
        .remove({ force: true, v: true })
        .catch(() => {}),
    ),
  );
  // a removal already under way elsewhere (409) is not done yet: wait for it, bounded, so `down` returns when all is gone
  for (let attempt = 0; attempt < 50 && containers.length > 0; attempt++) {
    if ((await docker.listContainers({ all: true, filters: filter })).length === 0) break;
    await sleep(100);
  }
  const networks = await docker.listNetworks({ filters: filter });
  let removedNetworks = 0;
  for (const n of networks) {
    // a container removal may lag a moment behind; retry briefly (bounded)
    for (let attempt = 0; attempt < 20; attempt++) {
      try {
        await docker.getNetwork(n.Id).remove();
        removedNetworks++;
        break;
      } catch (err) {
        if ((err as { statusCode?: number }).statusCode === 404) break;
        await sleep(100);
      }
    }
  }
  return { containers: containers.length, networks: removedNetworks };
}
