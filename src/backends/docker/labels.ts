import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { canonicalSpecPath, pidNamespace } from '../ownership';
import { isAlive, processStartTicks, type ProcessRef } from '../local/processes';
import type { Dockerode } from './engine';

/** Labels on everything the docker backend makes, so `down --all` and the next run's sweep find it. */
export const LABEL = {
  app: 'topas.app',
  run: 'topas.run',
  /** absolute path of the app's spec: with the app name, what tells two folders' apps apart */
  spec: 'topas.spec',
  ownerPid: 'topas.owner-pid',
  /** kernel start time of the owner pid, so a recycled pid is not taken for the owner */
  ownerStart: 'topas.owner-start',
  /** pid namespace of the owner: a pid from another namespace says nothing about liveness here */
  ownerPidns: 'topas.owner-pidns',
  /** `pid:startTicks` of the run's detached proxy host, so a sweep can stop it */
  proxyHost: 'topas.proxy-host',
  service: 'topas.service',
  kind: 'topas.kind',
  replica: 'topas.replica',
  image: 'topas.image',
} as const;

export function runLabels(app: string, runId: string, specFile?: string, proxyHost?: ProcessRef): Record<string, string> {
  const start = processStartTicks(process.pid);
  const ns = pidNamespace();
  return {
    [LABEL.app]: app,
    [LABEL.run]: runId,
    ...(specFile ? { [LABEL.spec]: canonicalSpecPath(specFile) } : {}),
    [LABEL.ownerPid]: String(process.pid),
    ...(start !== undefined ? { [LABEL.ownerStart]: String(start) } : {}),
    ...(ns !== undefined ? { [LABEL.ownerPidns]: ns } : {}),
    ...(proxyHost ? { [LABEL.proxyHost]: `${proxyHost.pid}:${proxyHost.startTicks ?? ''}` } : {}),
  };
}

function ownerOf(labels: Record<string, string> | undefined): ProcessRef | undefined {
  const pid = Number(labels?.[LABEL.ownerPid]);
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  const start = labels?.[LABEL.ownerStart];
  return { pid, startTicks: start === undefined ? undefined : Number(start) };
}

/**
 * The owner that labelled this object is known to be gone: its pid (with its
 * start time) no longer runs in our pid namespace. An owner recorded in another
 * pid namespace is never judged gone; an object without an owner label (made
 * by an older topas) counts as a leftover.
 */
export function ownerGone(labels: Record<string, string> | undefined): boolean {
  const ns = labels?.[LABEL.ownerPidns];
  if (ns !== undefined && ns !== pidNamespace()) return false;
  const owner = ownerOf(labels);
  return owner === undefined || !isAlive(owner);
}

export function proxyHostOf(labels: Record<string, string> | undefined): ProcessRef | undefined {
  const [pid, start] = (labels?.[LABEL.proxyHost] ?? '').split(':');
  if (!/^\d+$/.test(pid ?? '')) return undefined;
  if (labels?.[LABEL.ownerPidns] !== undefined && labels[LABEL.ownerPidns] !== pidNamespace()) return undefined;
  return { pid: Number(pid), startTicks: start ? Number(start) : undefined };
}

/**
 * A run kept on purpose (`topas up`, --keep: the SUT lives on) has a dead owner
 * pid like a crashed one; a marker tells them apart. Labels cannot change after
 * creation, so the marker is a small labelled volume on the engine: every topas
 * that talks to that engine sees it, whatever its TMPDIR.
 */
export const KEPT_KIND = 'kept';

function markerVolume(runId: string): string {
  return dockerName('topas-kept', runId);
}

export async function markDetached(docker: Dockerode, app: string, runId: string, specFile: string): Promise<void> {
  await docker.createVolume({ Name: markerVolume(runId), Labels: { ...runLabels(app, runId, specFile), [LABEL.kind]: KEPT_KIND } });
}

export async function clearDetached(docker: Dockerode, runId: string): Promise<void> {
  fs.rmSync(legacyMarkerFile(runId), { force: true });
  const { Volumes } = await docker.listVolumes({ filters: { label: [`${LABEL.run}=${runId}`, `${LABEL.kind}=${KEPT_KIND}`] } });
  for (const v of Volumes ?? []) {
    await docker
      .getVolume(v.Name)
      .remove()
      .catch((err: { statusCode?: number }) => {
        if (err.statusCode !== 404) throw err;
      });
  }
}

/** Where an older topas marked kept runs (per TMPDIR); still honoured. */
function legacyMarkerFile(runId: string): string {
  return path.join(os.tmpdir(), 'topas-docker', 'detached', runId.replace(/[^A-Za-z0-9._-]/g, '_'));
}

export function hasLegacyMarker(runId: string): boolean {
  return fs.existsSync(legacyMarkerFile(runId));
}

/**
 * A kept run's proxy host watches this folder and exits once it is gone, so
 * removing a run (down, a sweep) also ends its host.
 */
export function proxyHostDir(runId: string): string {
  return path.join(os.tmpdir(), 'topas-docker', 'proxy-hosts', runId.replace(/[^A-Za-z0-9._-]/g, '_'));
}

export function removeProxyHostDir(runId: string): void {
  fs.rmSync(proxyHostDir(runId), { recursive: true, force: true });
}

/** Docker names: [a-zA-Z0-9][a-zA-Z0-9_.-]* */
export function dockerName(...parts: string[]): string {
  return parts
    .map((p) => p.replace(/[^A-Za-z0-9_.-]+/g, '-'))
    .join('-')
    .replace(/^[^A-Za-z0-9]+/, '')
    .slice(0, 200);
}
