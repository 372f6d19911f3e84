/**
 * A worker for the transport behaviour tests (test/unit/worker-transport.test.ts):
 * answers messages the same way in a thread or a process.
 */
import { connectParent } from '../../src/workers/parent-port';

type In = { type: 'echo'; value: unknown } | { type: 'env'; name: string } | { type: 'crash'; message: string } | { type: 'hang' } | { type: 'shutdown' };
type Out = { type: 'echo'; value: unknown } | { type: 'env'; value: string | undefined } | { type: 'ready' };

const port = connectParent<In, Out>();
port.on((msg) => {
  switch (msg.type) {
    case 'echo':
      port.post({ type: 'echo', value: msg.value });
      break;
    case 'env':
      port.post({ type: 'env', value: process.env[msg.name] });
      break;
    case 'crash':
      setTimeout(() => {
        throw new TypeError(msg.message);
      }, 0);
      break;
    case 'hang': {
      // a loop that never yields: only terminate/kill ends it (bounded, in case nothing does)
      const end = Date.now() + 20_000;
      while (Date.now() < end);
      break;
    }
    case 'shutdown':
      port.close();
      break;
  }
});
port.post({ type: 'ready' });
