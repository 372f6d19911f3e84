import { Args, Flags } from '@oclif/core';
import { BaseCommand } from '../cli/base-command';
import { appFlag, backendFlag, clusterFlags, envFileFlag, envFlag, parseEnvFlags, withClusterFlags } from '../cli/common-flags';
import { runLoad } from '../load/load-service';
import type { Spread } from '../workers/transport';
import { parseReporterFlags } from '../run/render-reports';
import { TopasError } from '../errors';
import { LIMITS, formatLimitDuration } from '../util/limits';

export default class Load extends BaseCommand {
  static override summary = 'Load test: open-model arrival rate, live progress, summary; thresholds decide the exit code';
  static override description =
    'Runs a Lua load script (options, setup(), iteration(ctx), teardown(data)) against the SUT, standing it up as `topas run` does. ' +
    'Executors: constant arrival rate (--rate), ramping arrival rate (--ramp or options.stages), constant VUs (options.vus). ' +
    'Iterations start on schedule whether or not earlier ones finished; when no VU is free and max VUs are in use an iteration is dropped and counted. ' +
    'Thresholds use k6 syntax (METRIC:EXPR, e.g. "http_req_duration:p(95)<250", "http_req_failed:rate<0.01", "iterations:rate>190"). ' +
    '--spread processes runs the workers as processes of this machine, each with 1/N of the rate; their HDR histograms merge exactly into one live view and summary. ' +
    'A worker lost mid-run makes the run partial (state "partial", which share was lost and from when): the thresholds on what arrived decide the exit code, unless --require-all-workers. ' +
    'Exit codes: 0 passed (or partial), 1 the script failed or, with --require-all-workers, a worker was lost, 2 invalid input, 3 SUT could not start, 4 thresholds failed or baseline regressed, 130 interrupted.';
  static override args = {
    file: Args.string({ description: 'the load script (.lua), or a Postman collection (.json) to run as the iteration', required: true }),
  };
  static override examples = [
    '<%= config.bin %> load tests/load.lua --rate 200/s --duration 30s',
    '<%= config.bin %> load tests/load.lua --rate 1000/s --ramp 10s --duration 1m --max-vus 500',
    '<%= config.bin %> load tests/load.lua --threshold "http_req_duration:p(95)<250" --threshold "http_req_failed:rate<0.01"',
    '<%= config.bin %> load tests/load.lua --baseline 20250131-120501-123-10-a1b2c3 --max-regression 5%',
    '<%= config.bin %> load tests/load.lua --json > summary.json',
    '<%= config.bin %> load api.postman_collection.json --folder users --rate 100/s --duration 30s',
  ];
  static override flags = {
    rate: Flags.string({ description: `iterations started per time unit (open model), e.g. 200/s, 1000/m, 50/100ms; at most ${LIMITS.ratePerSecond.toLocaleString('en-US')}/s`, helpValue: '200/s' }),
    duration: Flags.string({ description: `how long to start iterations (default: options.duration or 30s; at most ${formatLimitDuration(LIMITS.durationMs)})`, helpValue: '30s' }),
    ramp: Flags.string({ description: 'ramp linearly from 0 to --rate over this long (at most --duration)', helpValue: '5s' }),
    'max-vus': Flags.integer({ description: `VU pool cap (1-${LIMITS.vus.toLocaleString('en-US')}); iterations due while all are busy are dropped`, min: 1, max: LIMITS.vus }),
    threshold: Flags.string({ description: 'METRIC:EXPR in k6 syntax (repeatable); replaces the script\'s thresholds on that metric', multiple: true, default: [], helpValue: 'http_req_duration:p(95)<250' }),
    workers: Flags.integer({ description: `workers hosting the VUs (default: cores - 1, at least 1; at most ${LIMITS.workers})`, min: 1, max: LIMITS.workers }),
    spread: Flags.string({ description: 'where the workers run: threads of this process, or processes on this machine (each its own Node and Lua heap; their histograms merge exactly); with --backend kubernetes they are pods of an Indexed Job next to the SUT', options: ['threads', 'processes'], default: 'threads' }),
    'require-all-workers': Flags.boolean({ description: 'a worker lost while the load runs fails the run (exit 1) instead of making it partial', default: false }),
    baseline: Flags.string({ description: 'compare with an earlier run (run id or JSON file); fail when p95 or the error rate regressed', helpValue: 'RUN|FILE' }),
    'max-regression': Flags.string({ description: 'allowed regression against --baseline, e.g. 10% or 0.1', default: '10%' }),
    app: appFlag,
    backend: backendFlag,
    env: envFlag,
    'env-file': envFileFlag,
    'metrics-port': Flags.integer({ description: 'serve Prometheus metrics on 127.0.0.1:<port>/metrics while running: requests, errors, latency histogram and rate per request name (0: any free port)', min: 0, max: 65535 }),
    reporter: Flags.string({ description: 'summary | table | json | junit | html | github | ./custom.js, optionally with :path (repeatable); stdout shows the summary unless a reporter without a path replaces it, e.g. html:report.html', multiple: true, default: [] }),
    keep: Flags.boolean({ description: 'leave the SUT running afterwards (`topas down` removes it)', default: false }),
    folder: Flags.string({ description: 'with a Postman collection: run only this folder (or request) as the iteration', helpValue: 'NAME' }),
    environment: Flags.string({ description: 'with a Postman collection: a Postman environment file', helpValue: 'FILE' }),
    // --backend kubernetes: the workers are pods next to the SUT (the plugin's transport), whatever --spread says
    ...clusterFlags,
  };

  async run(): Promise<void> {
    const { args, flags } = await this.parse(Load);
    const outcome = await runLoad({
      io: withClusterFlags(this.io, flags),
      file: args.file,
      app: flags.app,
      backend: flags.backend,
      flags: { rate: flags.rate, duration: flags.duration, ramp: flags.ramp, maxVus: flags['max-vus'], threshold: flags.threshold },
      workers: flags.workers,
      spread: flags.spread as Spread,
      requireAllWorkers: flags['require-all-workers'],
      baseline: flags.baseline,
      maxRegression: parseRegression(flags['max-regression']),
      env: parseEnvFlags(flags.env, flags['env-file'], this.io.cwd),
      keep: flags.keep,
      postman: { folder: flags.folder, environment: flags.environment },
      json: flags.json,
      debug: flags.debug,
      metricsPort: flags['metrics-port'],
      reporters: parseReporterFlags(flags.reporter, Boolean(flags.json), 'load'),
    });
    this.finish(outcome.exitCode);
  }
}

/** `10%` or `0.1` -> 0.1 */
export function parseRegression(v: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(%)?\s*$/.exec(v);
  if (!m) throw new TopasError('INVALID_FLAGS', `--max-regression: expected a percentage like 10% or a fraction like 0.1, got "${v}"`);
  return m[2] ? Number(m[1]) / 100 : Number(m[1]);
}
