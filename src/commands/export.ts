import { Args, Flags } from '@oclif/core';
import { BaseCommand } from '../cli/base-command';
import { TopasError } from '../errors';
import { runExport } from '../export/export-service';
import { EXPORT_TARGETS, type ExportTarget } from '../export/targets';

export default class Export extends BaseCommand {
  static override summary = 'Generate a k6, Locust or Artillery script from a load scenario, with its thresholds translated';
  static override description =
    'Reads the scenario\'s syntax tree (or a Postman collection) and writes the same load for another tool: executor, rate, stages, VUs and duration (load flags override the script\'s options as for `topas load`), ' +
    'thresholds (k6 thresholds, Artillery `ensure`, a Locust quitting hook that sets the exit code), and the HTTP flow of iteration(): requests, headers, JSON bodies, query, named requests, checks, sleeps, values carried from a response into later requests, if and numeric for. ' +
    'URLs that name a service (http://api/...) get --base-url. What has no equivalent (db, sut, shape, grpc, sync, arbitrary Lua) is listed with file:line: an error (exit 2) unless --allow-partial leaves it out. ' +
    'Artillery gets a processor file beside the script (-o is required).';
  static override args = {
    target: Args.string({ description: 'the tool to export to', required: true, options: [...EXPORT_TARGETS] }),
    file: Args.string({ description: 'the load scenario (.lua) or a Postman collection (.json)', required: true }),
  };
  static override examples = [
    '<%= config.bin %> export k6 tests/load.lua --base-url http://127.0.0.1:8080 -o load.k6.js',
    '<%= config.bin %> export locust tests/load.lua --rate 50/s --duration 1m -o locustfile.py',
    '<%= config.bin %> export artillery tests/load.lua --allow-partial -o load.yml',
    '<%= config.bin %> export k6 api.postman_collection.json --environment dev.postman_environment.json -o api.k6.js',
  ];
  static override flags = {
    output: Flags.string({ char: 'o', description: 'write the script here (default: stdout)', helpValue: 'FILE' }),
    'base-url': Flags.string({ description: 'where service names in URLs (http://api/...) point', helpValue: 'http://127.0.0.1:8080' }),
    'allow-partial': Flags.boolean({ description: 'leave out what has no equivalent (listed on stderr and in the script) instead of failing', default: false }),
    rate: Flags.string({ description: 'as `topas load --rate`: overrides options.rate', helpValue: '200/s' }),
    duration: Flags.string({ description: 'as `topas load --duration`', helpValue: '30s' }),
    ramp: Flags.string({ description: 'as `topas load --ramp`', helpValue: '5s' }),
    'max-vus': Flags.integer({ description: 'as `topas load --max-vus`', min: 1 }),
    threshold: Flags.string({ description: 'as `topas load --threshold` (repeatable)', multiple: true, default: [], helpValue: 'http_req_duration:p(95)<250' }),
    environment: Flags.string({ description: 'with a Postman collection: a Postman environment file', helpValue: 'FILE' }),
  };

  async run(): Promise<void> {
    const { args, flags } = await this.parse(Export);
    // the script goes to stdout without -o: JSON would be mixed into it
    if (flags.json && !flags.output) throw new TopasError('INVALID_FLAGS', '--json needs -o FILE (without it the script itself is printed on stdout)');
    const outcome = await runExport({
      io: this.io,
      target: args.target as ExportTarget,
      file: args.file,
      out: flags.output,
      baseUrl: flags['base-url'],
      allowPartial: flags['allow-partial'],
      flags: { rate: flags.rate, duration: flags.duration, ramp: flags.ramp, maxVus: flags['max-vus'], threshold: flags.threshold },
      environment: flags.environment,
    });
    if (flags.json) this.outJson({ files: outcome.files, skipped: outcome.skipped });
    this.finish(outcome.exitCode);
  }
}
