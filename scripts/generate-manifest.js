#!/usr/bin/env node
'use strict';
// Writes oclif.manifest.json from the compiled commands (prepack), so an
// installed topas answers --help without loading every command. Generated,
// never written by hand.
const fs = require('node:fs');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..');

async function main() {
  const { Plugin } = require('@oclif/core');
  const plugin = new Plugin({ isRoot: true, root: ROOT, type: 'core', ignoreManifest: true, errorOnManifestCreate: true });
  await plugin.load();
  const file = path.join(ROOT, 'oclif.manifest.json');
  fs.writeFileSync(file, JSON.stringify(plugin.manifest, null, 2) + '\n');
  process.stderr.write(`wrote ${path.relative(process.cwd(), file)} (${Object.keys(plugin.manifest.commands).length} commands)\n`);
}

main().catch((err) => {
  process.stderr.write(`${err.stack || err}\n`);
  process.exit(1);
});
