'use strict';
// oclif loads hooks from the plugin's folder; the TypeScript is compiled by the
// repository's build (npm run build) into dist/plugins/kubernetes.
module.exports = require('../../../dist/plugins/kubernetes/src/hooks/backends').default;
