'use strict';
// Preloaded (node -r) in the mock-app image. The fixture server binds its HTTP
// and gRPC listeners to 127.0.0.1, which inside a container nobody else can
// reach (not the published host port, not other containers). Rewrite loopback
// binds to all addresses so the unchanged fixture works in a container.
const net = require('node:net');

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1']);
const ALL = process.env.HOST || '0.0.0.0';
const listen = net.Server.prototype.listen;

net.Server.prototype.listen = function listenAllAddresses(...args) {
  const [first, second] = args;
  if (first !== null && typeof first === 'object' && LOOPBACK.has(first.host)) {
    args[0] = { ...first, host: ALL };
  } else if ((typeof first === 'number' || typeof first === 'string') && typeof second === 'string' && LOOPBACK.has(second)) {
    args[1] = ALL;
  }
  return listen.apply(this, args);
};
