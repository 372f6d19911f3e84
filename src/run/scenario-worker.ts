/**
 * Worker-thread entry: one Lua engine hosting many scenario coroutines.
 * Talks to the main thread only through the messages in worker-protocol.ts.
 */
import { RpcClient } from './rpc-client';
import { connectParent } from '../workers/parent-port';
import { serializeError } from '../errors';
import { LuaRuntime } from '../lua/engine';
import type { FromWorker, ToWorker } from './worker-protocol';
import { MessageBatcher } from './message-batcher';

const port = connectParent<ToWorker, FromWorker>();
const batcher = new MessageBatcher<FromWorker>((messages) => port.post(messages.length === 1 ? messages[0] : { type: 'batch', messages }));
const post = (msg: FromWorker) => batcher.push(msg);

const rpc = new RpcClient((msg) => post(msg));

const ready = LuaRuntime.create({
  onLog: (line) => post({ type: 'log', line }),
  onEvent: (runId, event) => post({ type: 'event', runId, event }),
  rpc: (runId, method, args) =>
    rpc.call(runId, method, args),
});

ready.then(
  () => post({ type: 'ready' }),
  (err) => post({ type: 'fatal', error: serializeError(err) }),
);

port.on(onMessage);

function onMessage(msg: ToWorker): void {
  switch (msg.type) {
    case 'batch':
      for (const m of msg.messages) onMessage(m);
      break;
    case 'run':
      ready
        .then((rt) => rt.run(msg.task))
        .then(
          (result) => {
            const { runId, name: _name, file: _file, instance: _instance, ...rest } = result;
            post({ type: 'done', runId, result: rest });
            // a crashed engine is never reused: the pool replaces this worker (and its wasm memory)
            void ready.then((rt) => {
              if (rt.crashed) post({ type: 'fatal', error: { name: 'LuaEngineCrash', message: rt.crashed } });
            });
          },
          (err) => post({ type: 'fatal', error: serializeError(err) }),
        );
      break;
    case 'cancel':
      void ready.then((rt) => rt.cancel(msg.runId, msg.reason));
      break;
    case 'rpc-result':
      rpc.settle(msg);
      break;
    case 'endpoints':
      void ready.then((rt) => rt.setEndpoints(msg.endpoints));
      break;
    case 'shutdown':
      void ready.then(
        (rt) => {
          rt.close();
          port.close();
        },
        () => port.close(),
      );
      break;
  }
}
