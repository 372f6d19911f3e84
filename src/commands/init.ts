import { Flags } from '@oclif/core';
import { BaseCommand } from '../cli/base-command';
import { scaffoldProject, type ScaffoldFile } from '../init/scaffold';

export default class Init extends BaseCommand {
  static override summary = 'Scaffold topas.yaml, a sample app, tests/smoke.lua and editor settings here';
  static override description =
    'Writes, in the current folder: topas.yaml (one small Node service and one PostgreSQL database), app/server.js (the service, no dependencies), tests/smoke.lua (a scenario that passes against it), .luarc.json (Lua language server settings pointing at the topas type definitions) and `.topas/` in .gitignore. Existing files are left alone unless --force; .gitignore is only appended to.';
  static override examples = ['<%= config.bin %> init', '<%= config.bin %> init --name shop', '<%= config.bin %> init --force --json'];
  static override flags = {
    force: Flags.boolean({ description: 'overwrite files that already exist', default: false }),
    name: Flags.string({ description: 'app name in topas.yaml (default: from the folder name)' }),
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(Init);
    const result = await scaffoldProject({ dir: this.io.cwd, force: flags.force, name: flags.name });
    if (flags.json) return this.outJson(result);
    for (const f of result.files) this.out(describe(f));
    this.out(`\nnext:\n${result.next.map((n) => `  ${n}`).join('\n')}`);
  }
}

function describe(f: ScaffoldFile): string {
  const detail = f.detail ? ` (${f.detail})` : '';
  return `${f.action.padEnd(11)} ${f.path}${detail}`;
}
