import { Args, Flags } from '@oclif/core';
import { BaseCommand } from '../cli/base-command';
import { appFlag } from '../cli/common-flags';
import { TopasError } from '../errors';

export default class Compare extends BaseCommand {
  static override summary = 'Two stored runs side by side: per endpoint p95, p99, error rate, rate achieved; per scenario state';
  static override description =
    'B is measured against A. A figure worse by more than --max-regression (latency or error rate up, rate achieved down), or a scenario that passed in A and not in B, is a regression: exit 4.';
  static override examples = [
    '<%= config.bin %> compare 20261122-101500-123-10-a1b2c3 20261123-091000-456-10-d4e5f6',
    '<%= config.bin %> compare A_ID B_ID --max-regression 5% --format html -o compare.html',
  ];
  static override args = {
    a: Args.string({ description: 'the run to compare against (see `topas test status`)', required: true }),
    b: Args.string({ description: 'the run measured against it', required: true }),
  };
  static override flags = {
    app: appFlag,
    'max-regression': Flags.string({ description: 'allowed regression, e.g. 10% or 0.1', default: '10%' }),
    format: Flags.string({ description: 'output format', default: 'table', options: ['table', 'json', 'html'] }),
    output: Flags.string({ char: 'o', description: 'write to this file instead of stdout', helpValue: 'FILE' }),
  };

  async run(): Promise<void> {
    const { args, flags } = await this.parse(Compare);
    const m = /^\s*(\d+(?:\.\d+)?)\s*(%)?\s*$/.exec(flags['max-regression']);
    if (!m) throw new TopasError('INVALID_FLAGS', `--max-regression: expected a percentage like 10% or a fraction like 0.1, got "${flags['max-regression']}"`);
    const { compareRuns } = await import('../run/compare-service');
    const { exitCode } = await compareRuns({
      io: this.io,
      a: args.a,
      b: args.b,
      app: flags.app,
      maxRegression: m[2] ? Number(m[1]) / 100 : Number(m[1]),
      format: flags.json ? 'json' : (flags.format as 'table' | 'json' | 'html'),
      file: flags.output,
    });
    this.finish(exitCode);
  }
}
