/**
 * Where a proxy's time and tail go: the diagnostic behind bench/proxy-overhead.
 * wrk (one thread) drives a fixed-response server through each proxy path in
 * interleaved bursts; per path it prints the median of:
 * - req/s and wrk's p99;
 * - the proxy's CPU per request (user and system separately): for the topas
 *   proxies process.cpuUsage() of this process (it does nothing else during a
 *   burst), for Toxiproxy its /proc/<pid>/stat utime+stime. CPU time per
 *   request does not depend on how much of the machine others take, so it is
 *   the contention-robust number;
 * - in-process paths only: GC pauses (count and ms per 10,000 requests, from
 *   the `gc` performance entries) and the event loop's delay (p99 and max of
 *   monitorEventLoopDelay at 1 ms resolution): how long a request that is
 *   ready has to wait for the loop;
 * - the proxy's time runnable but not running (run queue wait, summed over its
 *   threads from /proc/<pid>/task/<tid>/schedstat) per request and its
 *   involuntary context switches per 1,000 requests: what the rest of the
 *   machine takes from it.
 *
 *   node dist/bench/proxy-tail.js [--seconds 2] [--rounds 5] [--connections 32] [--paths tcp,http,toxiproxy,pipe,thread-tcp,thread-http]
 *     [--child 'tcp:--max-semi-space-size=64' ...] [--child 'tcp@/tmp/old/shaping-proxy.js'] [--busy-main 2/20]
 *
 * --child MODE[@MODULE][:NODE_FLAGS] (repeatable) adds a topas proxy in a child
 * process of its own, run with those node flags (A/B of V8 settings), from
 * another build of shaping-proxy.js if MODULE is given (A/B of code); its CPU
 * and run queue wait come from /proc like Toxiproxy's.
 *
 * --busy-main MS/PERIOD keeps this process's event loop busy for MS of every
 * PERIOD ms during the bursts, as a run's own work would (workers' metrics,
 * progress): what that adds to an in-process proxy's tail, against a `--child`
 * proxy that has a thread of its own (what a worker-thread data path would get).
 */
import { fork } from 'node:child_process';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import fs from 'node:fs';
import { monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks';
import { ShapingProxy } from '../src/shape/shaping-proxy';
import { arg, loadAverage, runWrk, serveFixedResponse, startPipeRelay, startToxiproxy, which } from './proxy-peers';

const CLK_TCK = 100;

interface Burst {
  rps: number;
  p99Ms: number;
  errors: number;
  userUsPerReq: number;
  sysUsPerReq: number;
  gcPer10k?: number;
  gcMsPer10k?: number;
  eldP99Ms?: number;
  eldMaxMs?: number;
  runWaitUsPerReq: number;
  preemptPer1k: number;
}

function procCpuUs(pid: number): { user: number; sys: number } {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // utime and stime are fields 14 and 15; `rest` starts at field 3
  return { user: (Number(rest[11]) * 1e6) / CLK_TCK, sys: (Number(rest[12]) * 1e6) / CLK_TCK };
}

/** run-queue wait (µs) and involuntary context switches, summed over the threads of `pid` */
function schedUs(pid: number): { waitUs: number; preempted: number } {
  let waitUs = 0;
  let preempted = 0;
  for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
    try {
      waitUs += Number(fs.readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[1]) / 1000;
      preempted += Number(/nonvoluntary_ctxt_switches:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8'))?.[1] ?? 0);
    } catch {
      // the thread ended
    }
  }
  return { waitUs, preempted };
}

function runChildProxy(): void {
  const [, , , mode, upstream, module] = process.argv;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const Proxy = module ? (require(module) as { ShapingProxy: typeof ShapingProxy }).ShapingProxy : ShapingProxy;
  const p = new Proxy({ name: `child-${mode}`, mode: mode as 'tcp' | 'http', targets: () => [{ host: '127.0.0.1', port: Number(upstream) }] });
  void p.start().then((a) => process.send!({ port: a.port }));
  process.on('disconnect', () => process.exit(0));
}

async function main(): Promise<void> {
  const seconds = Number(arg('seconds', '2'));
  const rounds = Number(arg('rounds', '5'));
  const connections = Number(arg('connections', '32'));
  const wanted = arg('paths', 'tcp,http,toxiproxy,pipe').split(',');
  const withLoopDelay = !process.argv.includes('--no-loop-delay');
  const wrkBin = which('wrk');
  if (!wrkBin) throw new Error('wrk is not installed (scripts/install-peers.sh)');
  const server = fork(__filename, ['server'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const closers: Array<() => unknown> = [() => server.kill()];
  try {
    const { port } = await new Promise<{ port: number }>((resolve) => server.once('message', (m) => resolve(m as { port: number })));
    const paths: Array<{ name: string; port: number; pid?: number; thread?: boolean }> = [];
    for (const mode of ['tcp', 'http'] as const) {
      if (!wanted.includes(mode)) continue;
      const p = new ShapingProxy({ name: `tail-${mode}`, mode, targets: () => [{ host: '127.0.0.1', port }] });
      closers.push(() => p.close());
      paths.push({ name: `topas ${mode}`, port: (await p.start()).port });
    }
    // the same proxy in a worker thread of this process: off the main event loop, not out of the process
    for (const mode of ['tcp', 'http'] as const) {
      if (!wanted.includes(`thread-${mode}`)) continue;
      const w = new Worker(__filename, { workerData: { mode, upstream: port } });
      closers.push(() => w.terminate());
      const m = await new Promise<{ port: number }>((resolve) => w.once('message', (x) => resolve(x as { port: number })));
      paths.push({ name: `thread ${mode}`, port: m.port, thread: true });
    }
    for (let i = 0; i < process.argv.length; i++) {
      if (process.argv[i] !== '--child') continue;
      const [spec, flags = ''] = process.argv[i + 1].split(/:(.*)/s);
      const [mode, module] = spec.split('@');
      const cp = fork(__filename, ['proxy', mode, String(port), ...(module ? [module] : [])], { execArgv: flags.split(' ').filter(Boolean), stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      closers.push(() => cp.kill());
      const m = await new Promise<{ port: number }>((resolve) => cp.once('message', (x) => resolve(x as { port: number })));
      // a build is named by the folder that holds its dist/ (two builds' dist/src would look alike)
      const parts = module?.split('/') ?? [];
      const build = parts.lastIndexOf('dist') > 0 ? parts[parts.lastIndexOf('dist') - 1] : parts.slice(-4, -2).join('/');
      let name = `${mode}${module ? ` ${build}` : ''} ${flags}`.trim();
      while (paths.some((x) => x.name === name)) name += "'";
      paths.push({ name, port: m.port, pid: cp.pid });
    }
    const toxiBin = which('toxiproxy-server');
    if (toxiBin && wanted.includes('toxiproxy')) {
      const t = await startToxiproxy(toxiBin, port);
      closers.push(t.stop);
      paths.push({ name: 'toxiproxy', port: t.port, pid: t.pid });
    }
    if (wanted.includes('pipe')) {
      const pipe = await startPipeRelay(port);
      closers.push(pipe.close);
      paths.push({ name: 'node pipe', port: pipe.port });
    }
    const gcs: number[] = [];
    const obs = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) gcs.push(e.duration);
    });
    obs.observe({ entryTypes: ['gc'] });
    closers.push(() => obs.disconnect());

    const burst = async (p: { port: number; pid?: number; thread?: boolean }, secs: number): Promise<Burst> => {
      gcs.length = 0;
      // the monitor is a 1 ms timer on the proxy's loop: --no-loop-delay shows what it costs the proxy
      const eld = monitorEventLoopDelay({ resolution: 1 });
      if (withLoopDelay) eld.enable();
      const s0 = schedUs(p.pid ?? process.pid);
      const c0 = p.pid ? procCpuUs(p.pid) : process.cpuUsage();
      const r = await runWrk(wrkBin, p.port, connections, secs * 1000);
      const c1 = p.pid ? procCpuUs(p.pid) : process.cpuUsage();
      const s1 = schedUs(p.pid ?? process.pid);
      eld.disable();
      // GC and loop delay are the main thread's: only for proxies on it
      const inProcess = !p.pid && !p.thread;
      return {
        rps: r.rps,
        p99Ms: r.p99Ms,
        errors: r.errors,
        userUsPerReq: (c1.user - c0.user) / r.requests,
        sysUsPerReq: ((p.pid ? (c1 as { sys: number }).sys : (c1 as NodeJS.CpuUsage).system) - (p.pid ? (c0 as { sys: number }).sys : (c0 as NodeJS.CpuUsage).system)) / r.requests,
        gcPer10k: inProcess ? (gcs.length * 10_000) / r.requests : undefined,
        gcMsPer10k: inProcess ? (gcs.reduce((a, b) => a + b, 0) * 10_000) / r.requests : undefined,
        eldP99Ms: inProcess && withLoopDelay ? eld.percentile(99) / 1e6 : undefined,
        eldMaxMs: inProcess && withLoopDelay ? eld.max / 1e6 : undefined,
        runWaitUsPerReq: (s1.waitUs - s0.waitUs) / r.requests,
        preemptPer1k: ((s1.preempted - s0.preempted) * 1000) / r.requests,
      };
    };
    const [busyMs, busyPeriod] = arg('busy-main', '0/0').split('/').map(Number);
    if (busyMs > 0 && busyPeriod > 0) {
      const spin = setInterval(() => {
        const end = performance.now() + busyMs;
        while (performance.now() < end) {
          // the main thread's own work, for busyMs
        }
      }, busyPeriod);
      closers.push(() => clearInterval(spin));
    }
    for (const p of paths) await burst(p, 1); // warm-up
    const runs = new Map<string, Burst[]>();
    for (let round = 0; round < rounds; round++) {
      for (const p of paths) {
        const b = await burst(p, seconds);
        process.stderr.write(`round ${round + 1} ${p.name.padEnd(10)} ${b.rps.toFixed(0).padStart(6)} req/s p99 ${b.p99Ms.toFixed(2)}ms cpu ${(b.userUsPerReq + b.sysUsPerReq).toFixed(1)}µs/req\n`);
        runs.set(p.name, [...(runs.get(p.name) ?? []), b]);
      }
    }
    const med = (xs: Array<number | undefined>) => {
      const v = xs.filter((x): x is number => x !== undefined).sort((a, b) => a - b);
      return v.length ? v[Math.floor(v.length / 2)] : undefined;
    };
    const f = (x: number | undefined, d = 1) => (x === undefined ? '-' : x.toFixed(d));
    process.stdout.write(`\nmedians of ${rounds} interleaved ${seconds}s wrk bursts (1 thread, ${connections} connections); load average ${loadAverage()}\n`);
    process.stdout.write('path        req/s   p99ms  user µs/req  sys µs/req  cpu µs/req  GCs/10k  GC ms/10k  loop-delay p99/max ms  run-wait µs/req  preempt/1k\n');
    for (const p of paths) {
      const bs = runs.get(p.name)!;
      const pick = <K extends keyof Burst>(k: K) => med(bs.map((b) => b[k] as number | undefined));
      process.stdout.write(
        `${p.name.padEnd(10).slice(0, 34)} ${f(pick('rps'), 0).padStart(6)} ${f(pick('p99Ms'), 2).padStart(7)} ${f(pick('userUsPerReq')).padStart(12)} ${f(pick('sysUsPerReq')).padStart(11)} ${f(med(bs.map((b) => b.userUsPerReq + b.sysUsPerReq))).padStart(11)} ${f(pick('gcPer10k')).padStart(8)} ${f(pick('gcMsPer10k'), 2).padStart(10)}  ${`${f(pick('eldP99Ms'), 1)}/${f(pick('eldMaxMs'), 1)}`.padEnd(20)} ${f(pick('runWaitUsPerReq')).padStart(15)} ${f(pick('preemptPer1k')).padStart(11)}\n`,
      );
    }
  } finally {
    for (const c of closers.reverse()) await c();
  }
}

if (!isMainThread) {
  const { mode, upstream } = workerData as { mode: 'tcp' | 'http'; upstream: number };
  const p = new ShapingProxy({ name: `thread-${mode}`, mode, targets: () => [{ host: '127.0.0.1', port: upstream }] });
  void p.start().then((a) => parentPort!.postMessage({ port: a.port }));
} else if (process.argv[2] === 'server') serveFixedResponse();
else if (process.argv[2] === 'proxy') runChildProxy();
else
  main().catch((err) => {
    console.error(err);
    process.exitCode = 1;
  });
