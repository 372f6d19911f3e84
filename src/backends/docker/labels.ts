import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { isAlive, processStartTicks, type ProcessRef } from '../local/processes';

/** Labels on everything the docker backend makes, so `down --all` and the next run's sweep find it. */
export const LABEL = {
  app: 'topas.app',
  run: 'topas.run',
  ownerPid: 'topas.owner-pid',
  /** kernel start time of the owner pid, so a recycled pid is not taken for the owner */
  ownerStart: 'topas.owner-start',
  service: 'topas.service',
  kind: 'topas.kind',
  replica: 'topas.replica',
  image: 'topas.image',
} as const;

export function runLabels(app: string, runId: string): Record<string, string> {
  const start = processStartTicks(process.pid);
  return {
    [LABEL.app]: app,
    [LABEL.run]: runId,
    [LABEL.ownerPid]: String(process.pid),
    ...(start !== undefined ? { [LABEL.ownerStart]: String(start) } : {}),
  };
}

export function ownerOf(labels: Record<string, string> | undefined): ProcessRef | undefined {
  const pid = Number(labels?.[LABEL.ownerPid]);
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  const start = labels?.[LABEL.ownerStart];
  return { pid, startTicks: start === undefined ? undefined : Number(start) };
}

/**
 * A run detached on purpose (`topas up` exited, the SUT lives on) has a dead
 * owner pid like a crashed one; a marker file tells them apart. Labels cannot
 * change after creation, so the marker lives beside the local backend's records.
 */
function detachedDir(): string {
  return path.join(os.tmpdir(), 'topas-docker', 'detached');
}

function markerFile(runId: string): string {
  return path.join(detachedDir(), runId.replace(/[^A-Za-z0-9._-]/g, '_'));
}

export function markDetached(runId: string): void {
  fs.mkdirSync(detachedDir(), { recursive: true });
  fs.writeFileSync(markerFile(runId), `${new Date().toISOString()}\n`);
}

export function clearDetached(runId: string): void {
  fs.rmSync(markerFile(runId), { force: true });
}

export function isDetached(runId: string): boolean {
  return fs.existsSync(markerFile(runId));
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

/** Owned = its owner process lives, or it was detached on purpose. */
export function runIsOwned(runId: string, labels: Record<string, string> | undefined): boolean {
  if (isDetached(runId)) return true;
  const owner = ownerOf(labels);
  return owner !== undefined && isAlive(owner);
}

/** Docker names: [a-zA-Z0-9][a-zA-Z0-9_.-]* */
export function dockerName(...parts: string[]): string {
  return parts
    .map((p) => p.replace(/[^A-Za-z0-9_.-]+/g, '-'))
    .join('-')
    .replace(/^[^A-Za-z0-9]+/, '')
    .slice(0, 200);
}
