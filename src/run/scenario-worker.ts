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
import { SyncClients } from '../sync/sync-client';
import type { ScenarioTask } from './scenario-types';

const port = connectParent<ToWorker, FromWorker>();
const batcher = new MessageBatcher<FromWorker>((messages) => port.post(messages.length === 1 ? messages[0] : { type: 'batch', messages }));
const post = (msg: FromWorker) => batcher.push(msg);

const rpc = new RpcClient((msg) => post(msg));
// instances of a playbook spread over runners reach their sync server themselves, not through the coordinator
const syncClients = new SyncClients();
const syncOf = new Map<string, { target: NonNullable<ScenarioTask['sync']>; instance: string }>();

const ready = LuaRuntime.create({
  onLog: (line) => post({ type: 'log', line }),
  onEvent: (runId, event) => post({ type: 'event', runId, event }),
  rpc: (runId, method, args) => {
    const sync = method.startsWith('sync.') ? syncOf.get(runId) : undefined;
    return sync ? syncClients.call(sync.target, sync.instance, method, args) : rpc.call(runId, method, args);
  },
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
      if (msg.task.sync) syncOf.set(msg.task.runId, { target: msg.task.sync, instance: msg.task.instance.id });
      ready
        .then((rt) => rt.run(msg.task))
        .then(
          (result) => {
            const { runId, name: _name, file: _file, instance: _instance, ...rest } = result;
            syncOf.delete(runId);
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
          syncClients.close();
          rt.close();
          port.close();
        },
        () => port.close(),
      );
      break;
  }
}
