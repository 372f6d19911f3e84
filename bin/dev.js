#!/usr/bin/env node
'use strict';
// Rebuilds before running, for working on topas itself.
const { execFileSync } = require('node:child_process');
const path = require('node:path');
execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', path.join(__dirname, '..', 'tsconfig.json')], { stdio: 'inherit' });
require('../dist/src/cli/main').main(process.argv.slice(2));
