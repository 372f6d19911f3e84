#!/usr/bin/env node
'use strict';
// the detached shaping proxy host (started by topas itself) skips the CLI framework
if (process.argv[2] === 'proxy-host') require('../dist/src/shape/proxy-host').proxyHostMain(process.argv.slice(3));
else require('../dist/src/cli/main').main(process.argv.slice(2));
