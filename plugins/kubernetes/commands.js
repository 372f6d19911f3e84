'use strict';
// oclif loads the plugin's commands from here (explicit strategy); the TypeScript is compiled
// by the repository's build (npm run build) into dist/plugins/kubernetes.
module.exports = require('../../dist/plugins/kubernetes/src/commands/index');
