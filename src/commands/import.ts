import { Args, Flags } from '@oclif/core';
import { BaseCommand } from '../cli/base-command';
import { TopasError } from '../errors';
import { IMPORT_FORMATS, runImport, type ImportFormat } from '../import/import-service';

export default class Import extends BaseCommand {
  static override summary = 'Turn recorded traffic (HAR) or a Postman collection into a topas load scenario';
  static override description =
    'Writes a Lua load scenario: the requests in order, a check on each recorded status (or the collection\'s obvious tests), think times from the recording, ' +
    'one BASE_URL (overridable with --env) per origin, and correlation: a value from an earlier JSON response that a later request sends again becomes a local read from that response. ' +
    'HAR: static assets are left out unless --keep-static, and only the hosts given with --include-host are kept (default: the first request\'s host).';
  static override args = {
    format: Args.string({ description: 'what the file is', required: true, options: [...IMPORT_FORMATS] }),
    file: Args.string({ description: 'the HAR file or the Postman collection', required: true }),
  };
  static override examples = [
    '<%= config.bin %> import har session.har --include-host api.example.com -o tests/load.lua',
    '<%= config.bin %> import postman api.postman_collection.json --environment dev.postman_environment.json -o tests/api-load.lua',
  ];
  static override flags = {
    output: Flags.string({ char: 'o', description: 'write the scenario here (default: stdout)', helpValue: 'FILE' }),
    'include-host': Flags.string({ description: 'HAR: keep requests to this host (host or host:port; repeatable)', multiple: true, default: [], helpValue: 'HOST' }),
    'keep-static': Flags.boolean({ description: 'HAR: keep static assets (scripts, styles, images, fonts)', default: false }),
    environment: Flags.string({ description: 'postman: a Postman environment file', helpValue: 'FILE' }),
    folder: Flags.string({ description: 'postman: only this folder (or request)', helpValue: 'NAME' }),
  };

  async run(): Promise<void> {
    const { args, flags } = await this.parse(Import);
    if (flags.json && !flags.output) throw new TopasError('INVALID_FLAGS', '--json needs -o FILE (without it the scenario itself is printed on stdout)');
    const r = await runImport({
      io: this.io,
      format: args.format as ImportFormat,
      file: args.file,
      out: flags.output,
      includeHosts: flags['include-host'],
      keepStatic: flags['keep-static'],
      environment: flags.environment,
      folder: flags.folder,
    });
    if (flags.json) this.outJson({ file: r.file, dropped: r.dropped });
  }
}
