import { BaseCommand } from '../cli/base-command';
import { TopasError } from '../errors';

/**
 * `topas plugins ...` in the single executable (scripts/build-binary.js puts
 * this class under every command id of @oclif/plugin-plugins). The binary
 * loads nothing from disk and has no npm to install with, so plugins need the
 * npm-installed topas; this says so instead of "command not found".
 */
export default class PluginsUnavailable extends BaseCommand {
  static override summary = 'Plugins need the npm-installed topas (not available in the single executable)';
  static override description = 'The single executable loads no plugins. Install topas with npm (`npm install -g topas`) to use `topas plugins install|link|uninstall` and plugin backends.';
  static override strict = false;

  async run(): Promise<void> {
    throw new TopasError('INVALID_FLAGS', `\`${['topas', ...this.id?.split(':') ?? ['plugins']].join(' ')}\`: the single executable cannot load plugins`, {
      hint: 'install topas with npm (`npm install -g topas`) to use plugins and plugin backends',
    });
  }
}
