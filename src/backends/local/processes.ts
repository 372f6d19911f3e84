import * as fs from 'node:fs';
import * as net from 'node:net';
import { sleep } from '../readiness';

/**
 * Process helpers for the local backend. Everything it starts runs detached in
 * its own process group (pgid = pid), so signalling `-pid` reaches grandchildren
 * too (a `sh -c` wrapper, a node cluster), and the group outlives a `topas up`
 * that exits. Pids are paired with their kernel start time so a recycled pid is
 * never mistaken for ours.
 */
export interface ProcessRef {
  pid: number;
  /** /proc/<pid>/stat field 22 (start time in clock ticks); absent off Linux */
  startTicks?: number;
}

export function processStartTicks(pid: number): number | undefined {
  const stat = readStat(pid);
  if (!stat) return undefined;
  // fields after the ")" of the command name: state is field 3, starttime field 22
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[19]);
  return Number.isFinite(ticks) ? ticks : undefined;
}

function readStat(pid: number): string | undefined {
  try {
    return fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
}

/** Alive = exists, is not a zombie, and (when known) started when we recorded it. */
export function isAlive(ref: ProcessRef): boolean {
  try {
    process.kill(ref.pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  const stat = readStat(ref.pid);
  if (stat === undefined) return process.platform !== 'linux';
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  if (fields[0] === 'Z' || fields[0] === 'X') return false;
  if (ref.startTicks !== undefined && Number(fields[19]) !== ref.startTicks) return false;
  return true;
}

/** A live process found by what its environment says, with where its stdout goes. */
export interface TaggedProcess extends ProcessRef {
  env: Record<string, string>;
  /** the file its stdout is written to, when it can be read */
  stdout?: string;
}

/**
 * Linux: the live process-group leaders (each replica runs in a group of its
 * own) of this user whose environment has `TOPAS_RUN_ID=runId`: every replica a
 * run started, recorded or not (a run killed between a spawn and its record).
 * Empty where there is no /proc.
 */
export function findRunProcesses(runId: string): TaggedProcess[] {
  let names: string[];
  try {
    names = fs.readdirSync('/proc');
  } catch {
    return [];
  }
  const marker = `TOPAS_RUN_ID=${runId}`;
  const out: TaggedProcess[] = [];
  for (const name of names) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    let raw: string;
    try {
      raw = fs.readFileSync(`/proc/${pid}/environ`, 'utf8');
    } catch {
      continue; // another user's, or gone
    }
    const vars = raw.split('\0');
    if (!vars.includes(marker)) continue;
    const stat = readStat(pid);
    if (!stat) continue;
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (fields[0] === 'Z' || fields[0] === 'X' || Number(fields[2]) !== pid) continue;
    const env: Record<string, string> = {};
    for (const v of vars) {
      const eq = v.indexOf('=');
      if (eq > 0) env[v.slice(0, eq)] = v.slice(eq + 1);
    }
    let stdout: string | undefined;
    try {
      stdout = fs.readlinkSync(`/proc/${pid}/fd/1`);
    } catch {
      stdout = undefined;
    }
    out.push({ pid, startTicks: Number(fields[19]), env, stdout });
  }
  return out;
}

/** Signal a whole process group; false when nothing was there. */
export function signalGroup(pgid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch {
    // the group may be gone while the leader lingers as a zombie: try the pid itself
    try {
      process.kill(pgid, signal);
      return true;
    } catch {
      return false;
    }
  }
}

/** True once the process is gone; false when it still runs after timeoutMs. */
export async function waitForExit(ref: ProcessRef, timeoutMs: number, intervalMs = 25): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (!isAlive(ref)) return true;
    if (Date.now() >= deadline) return false;
    await sleep(intervalMs);
  }
}

/**
 * Graceful stop of a process group: `signal` (SIGTERM) to the group, wait up to
 * graceMs for the leader, then SIGKILL the group either way so no grandchild stays.
 */
export async function stopGroup(ref: ProcessRef, graceMs: number, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (isAlive(ref)) {
    signalGroup(ref.pid, signal);
    if (!(await waitForExit(ref, graceMs))) {
      signalGroup(ref.pid, 'SIGKILL');
      await waitForExit(ref, 5000);
    }
  }
  // leftovers of the group (children that ignored SIGTERM), the leader being gone
  try {
    process.kill(-ref.pid, 'SIGKILL');
  } catch {
    /* group empty */
  }
  await waitReaped(ref, 1000);
}

/**
 * A child of ours stays a zombie until Node's SIGCHLD handling reaps it, a moment
 * after it died: wait for that, so `ps` right after a stop shows nothing. Bounded,
 * because a process we only know by pid (attach) is reaped by someone else, maybe never.
 */
async function waitReaped(ref: ProcessRef, timeoutMs: number): Promise<void> {
  if (process.platform !== 'linux') return;
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const stat = readStat(ref.pid);
    if (stat === undefined) return;
    if (ref.startTicks !== undefined && processStartTicks(ref.pid) !== ref.startTicks) return;
    await sleep(10);
  }
}

const recentPorts = new Map<number, number>();
const RECENT_PORT_MS = 30_000;

/** Binds `port` (0: any) on 127.0.0.1 and releases it: the port, or undefined when taken. */
function probePort(port: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', () => resolve(undefined));
    srv.listen(port, '127.0.0.1', () => {
      const addr = srv.address();
      const p = typeof addr === 'object' && addr ? addr.port : undefined;
      srv.close(() => resolve(p));
    });
  });
}

/**
 * Ports below the kernel's ephemeral range: a port picked there cannot be
 * taken by an outgoing connection between the check and the service's own
 * bind (a port from the ephemeral range can, and under connection churn it
 * was: EADDRINUSE in a replica started during a load). Undefined where the
 * range is unknown or leaves no room.
 */
function portsOutsideEphemeral(): { lo: number; hi: number } | undefined {
  try {
    const [lo, hi] = fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (lo > 12_000) return { lo: 10_000, hi: lo - 1 };
    if (hi < 63_000) return { lo: hi + 1, hi: 65_535 };
  } catch {
    /* not Linux */
  }
  return undefined;
}
const SAFE_PORTS = portsOutsideEphemeral();

/**
 * A free TCP port on 127.0.0.1, outside the ephemeral range when the kernel
 * says where that is (else the OS hands one out). Ports given out in the last
 * 30s are skipped so two replicas started at once never get the same one.
 */
export async function freePort(): Promise<number> {
  const now = Date.now();
  for (const [p, t] of recentPorts) if (now - t > RECENT_PORT_MS) recentPorts.delete(p);
  for (let attempt = 0; attempt < 100; attempt++) {
    const wanted = SAFE_PORTS && attempt < 50 ? SAFE_PORTS.lo + Math.floor(Math.random() * (SAFE_PORTS.hi - SAFE_PORTS.lo + 1)) : 0;
    if (wanted && recentPorts.has(wanted)) continue;
    const port = await probePort(wanted);
    if (port && !recentPorts.has(port)) {
      recentPorts.set(port, now);
      return port;
    }
  }
  throw new Error('no free TCP port found on 127.0.0.1 after 100 attempts');
}

/** Last `bytes` of a file as text ('' when missing). */
export function readTail(file: string, bytes = 64 * 1024): string {
  let fd: number | undefined;
  try {
    fd = fs.openSync(file, 'r');
    const size = fs.fstatSync(fd).size;
    const len = Math.min(size, bytes);
    const buf = Buffer.alloc(len);
    fs.readSync(fd, buf, 0, len, size - len);
    return buf.toString('utf8');
  } catch {
    return '';
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}
