import { Args, Flags, type Interfaces } from '@oclif/core';
import { BaseCommand } from '../cli/base-command';
import { appFlag, backendFlag, clusterFlags, envFileFlag, envFlag, parseDurationFlag, parseEnvFlags, withClusterFlags } from '../cli/common-flags';
import { runScenarios, type RunOptions } from '../run/run-service';
import type { Io } from '../io';
import { parseReporterFlags } from '../run/render-reports';
import { LIMITS, formatLimitDuration } from '../util/limits';
import type { Spread } from '../workers/transport';
import { TopasError } from '../errors';

export default class Run extends BaseCommand {
  static override summary = 'Run Lua scenarios as test runs against the SUT';
  static override description =
    'Stands the SUT up if it is not up, runs each scenario (at most --parallel at once) in worker threads, prints the report, and tears down unless --keep or `topas up` had started it. Exit codes: 0 passed, 1 failed, 2 invalid input, 3 SUT could not start, 5 timed out, 130 interrupted.';
  static override strict = false;
  static override args = {
    targets: Args.string({ description: 'scenario files, playbooks (.yaml), folders or globs (relative to --git-path with --git); none: tests/ next to the app spec' }),
  };
  static override examples = [
    '<%= config.bin %> run                # next to a topas.yaml: runs tests/',
    '<%= config.bin %> run tests/smoke.lua',
    '<%= config.bin %> run tests/ --parallel 4 --reporter junit:report.xml',
    "<%= config.bin %> run 'tests/*.lua' --app topas.yaml --backend local --timeout 2m",
    '<%= config.bin %> run tests/smoke.lua --env BASE_USER=alice --keep',
    '<%= config.bin %> run upgrade-under-load.yaml --metrics-port 9464',
    '<%= config.bin %> run --git https://example.com/org/tests.git --git-path e2e --git-ref v1.2.0',
  ];
  static override flags = {
    app: appFlag,
    backend: backendFlag,
    parallel: Flags.integer({ description: `scenarios at once (1-${LIMITS.parallel})`, default: 1, min: 1, max: LIMITS.parallel }),
    workers: Flags.integer({ description: `workers hosting scenarios (default: cores; at most ${LIMITS.workers}); on a backend whose runs go to a cluster, runner pods there (a playbook's instances meet in its sync service)`, min: 1, max: LIMITS.workers }),
    spread: Flags.string({ description: "where the workers run: threads of this process, or processes on this machine (a playbook's instances are placed over them; sync reaches all of them)", options: ['threads', 'processes'], default: 'threads' }),
    timeout: Flags.string({ description: `per-scenario timeout; a hard stop (at most ${formatLimitDuration(LIMITS.durationMs)})`, default: '5m' }),
    reporter: Flags.string({ description: 'table | json | junit | html | github | summary | ./custom.js, optionally with :path (repeatable); the path is checked before the run starts', multiple: true, default: [] }),
    env: envFlag,
    'env-file': envFileFlag,
    keep: Flags.boolean({ description: 'leave the SUT running afterwards (`topas down` removes it)', default: false }),
    'continue-on-failure': Flags.boolean({ description: 'run later steps after a failed step', default: false }),
    'metrics-port': Flags.integer({ description: 'serve Prometheus metrics on 127.0.0.1:<port>/metrics while running (0: any free port)', min: 0, max: 65535 }),
    git: Flags.string({ description: 'take scripts and playbooks from this Git repository (system git, shallow, cached by commit): an http(s)://, ssh://, git:// or file:// URL, or user@host:path; a local repository is file:///absolute/path. An http(s) one is fetched again by a cluster\'s runner pod (a --cron schedule: the ref\'s newest commit at each run); a token in TOPAS_GIT_TOKEN', helpValue: 'URL' }),
    'git-path': Flags.string({ description: 'folder or file inside the repository', dependsOn: ['git'], helpValue: 'P' }),
    'git-ref': Flags.string({ description: 'branch, tag or commit (default: HEAD)', dependsOn: ['git'], helpValue: 'R' }),
    'run-id': Flags.string({ hidden: true, description: 'use this run id (set by `topas test schedule`)' }),
    queue: Flags.boolean({ hidden: true, description: 'wait for the app lock first (set by `topas test schedule`)', default: false }),
    'sync-url': Flags.string({ hidden: true, description: "playbooks' sync groups live in this sync server (`topas sync-server`; token in TOPAS_SYNC_TOKEN), shared with the run's other runners", helpValue: 'ws://HOST:PORT' }),
    'sync-run': Flags.string({ hidden: true, description: 'names this run on the sync server: the same in all its runners', default: 'run' }),
    shard: Flags.string({ hidden: true, description: 'run only share I of N (from 0) of the scenarios and playbook instances; the other runners run the rest (with --sync-url)', helpValue: 'I/N' }),
    ...clusterFlags,
  };

  async run(): Promise<void> {
    const { argv, flags } = await this.parse(Run);
    const outcome = await runScenarios(Run.options(argv as string[], flags, withClusterFlags(this.io, flags)));
    this.finish(outcome.exitCode);
  }

  /** The run's options from its flags; `topas test schedule` validates the same ones before it queues. */
  static options(targets: string[], flags: RunFlags, io: Io): RunOptions {
    return {
      io,
      targets,
      app: flags.app,
      backend: flags.backend,
      parallel: flags.parallel,
      workers: flags.workers,
      spread: flags.spread as Spread,
      timeoutMs: parseDurationFlag(flags.timeout, '--timeout'),
      reporters: parseReporterFlags(flags.reporter, flags.json),
      env: parseEnvFlags(flags.env, flags['env-file'], io.cwd),
      keep: flags.keep,
      continueOnFailure: flags['continue-on-failure'],
      metricsPort: flags['metrics-port'],
      git: flags.git ? { url: flags.git, path: flags['git-path'], ref: flags['git-ref'] } : undefined,
      runId: flags['run-id'],
      queue: flags.queue,
      debug: flags.debug,
      syncServer: flags['sync-url'] ? { url: flags['sync-url'], token: io.env.TOPAS_SYNC_TOKEN || undefined, run: flags['sync-run'] } : undefined,
      shard: flags.shard !== undefined ? parseShard(flags.shard) : undefined,
    };
  }
}

function parseShard(v: string): { index: number; count: number } {
  const m = /^(\d+)\/(\d+)$/.exec(v.trim());
  const index = m ? Number(m[1]) : NaN;
  const count = m ? Number(m[2]) : NaN;
  if (!m || count < 1 || count > LIMITS.workers || index >= count) throw new TopasError('INVALID_FLAGS', `--shard: expected I/N with 0 <= I < N <= ${LIMITS.workers}, got ${JSON.stringify(v)}`);
  return { index, count };
}

type RunFlags = Interfaces.InferredFlags<typeof Run.flags & typeof BaseCommand.baseFlags>;
