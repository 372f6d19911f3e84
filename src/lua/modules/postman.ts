import type { LuaModuleContext, LuaModuleInstance } from './module-types';
import { luaDurationMs, luaOptions } from '../lua-values';
import { createUrlResolver } from './net';
import { resolveScenarioFile } from './grpc';
import { runPostmanCollection, type PostmanRunReport } from '../../postman/newman-run';
import { compileCollection, replayCollection } from '../../postman/collection-replay';

/**
 * `postman.run{...}` -> passed, report. Each request execution becomes a
 * step (continue_on_failure, so all are reported) holding a check for the
 * request and one per Postman test; a failed test fails its step with the
 * request name and the assertion message, hence the scenario.
 */
const POSTMAN_SHIM = String.raw`
local js, h = ...
local M = {}
function M.run(o)
  if type(o) ~= "table" then h.raise("postman.run: expected a table {collection=path, environment=, folder=, iterations=, vars=}") end
  local r = js.run(o)
  local many = r.iterations > 1
  for _, ex in ipairs(r.executions) do
    local name = many and (ex.name .. " (iteration " .. ex.iteration .. ")") or ex.name
    step(name, { continue_on_failure = true }, function()
      check(ex.name, ex.error == nil)
      local failed = {}
      if ex.error then failed[#failed + 1] = ex.error end
      for _, a in ipairs(ex.assertions) do
        check(ex.name .. " › " .. a.name, a.passed)
        if not a.passed then failed[#failed + 1] = a.name .. ": " .. (a.message or "failed") end
      end
      if #failed > 0 then
        h.raise_assert("postman " .. ex.method .. " " .. ex.url .. " (" .. ex.name .. "): " .. table.concat(failed, "; "))
      end
    end)
  end
  return r.passed, r.report
end
-- one fast pass over the collection (no newman): for load iterations; checks per request and test
function M.replay(o)
  if type(o) ~= "table" then h.raise("postman.replay: expected a table {collection=path, environment=, folder=, vars=}") end
  local results = js.replay(o)
  for _, ex in ipairs(results) do
    check(ex.name, ex.error == nil)
    for _, a in ipairs(ex.assertions) do check(ex.name .. " › " .. a.name, a.passed) end
  end
  return results
end
return M
`;

function stringVars(v: unknown, what: string): Record<string, string> {
  const vars: Record<string, string> = {};
  for (const [k, x] of Object.entries(luaOptions(v, what))) if (x !== undefined && x !== null) vars[k] = typeof x === 'object' ? JSON.stringify(x) : String(x);
  return vars;
}

export function createPostmanModule(ctx: LuaModuleContext): LuaModuleInstance {
  const resolveUrl = createUrlResolver(ctx.endpoints);
  return {
    shim: POSTMAN_SHIM,
    exports: {
      replay: async (optsIn: unknown) => {
        const o = luaOptions(optsIn, 'postman.replay');
        if (typeof o.collection !== 'string' || o.collection === '') throw new Error('postman.replay: collection= must name a collection file');
        let compiled;
        try {
          compiled = compileCollection({
            collection: resolveScenarioFile(ctx.task, o.collection, 'collection'),
            environment: typeof o.environment === 'string' && o.environment !== '' ? resolveScenarioFile(ctx.task, o.environment, 'environment') : undefined,
            folder: typeof o.folder === 'string' && o.folder !== '' ? o.folder : undefined,
            vars: stringVars(o.vars, 'postman.replay vars'),
          });
        } catch (err) {
          throw new Error(`postman.replay ${o.collection}: ${(err as Error).message}`);
        }
        const results = await replayCollection(compiled, resolveUrl, ctx.signal, luaDurationMs(o.timeout, 'postman.replay timeout'));
        for (const r of results) {
          // a Postman suite judges statuses with its tests (a 404 may be the point); without tests, >= 400 fails
          const failed = r.error !== undefined || r.assertions.some((a) => !a.passed) || (r.assertions.length === 0 && r.code >= 400);
          ctx.metrics?.request({ name: r.name, method: r.method, status: r.code, durationMs: r.timeMs, failed, bytesSent: r.bytesSent, bytesReceived: r.bytesReceived });
        }
        return results.map((r) => ({ name: r.name, method: r.method, url: r.url, code: r.code, time_ms: r.timeMs, error: r.error, assertions: r.assertions }));
      },
      run: async (optsIn: unknown) => {
        const o = luaOptions(optsIn, 'postman.run');
        if (typeof o.collection !== 'string' || o.collection === '') throw new Error('postman.run: collection= must name a collection file');
        const collection = resolveScenarioFile(ctx.task, o.collection, 'postman.run collection');
        const environment = typeof o.environment === 'string' && o.environment !== '' ? resolveScenarioFile(ctx.task, o.environment, 'postman.run environment') : undefined;
        let folder: string | string[] | undefined;
        if (typeof o.folder === 'string') folder = o.folder;
        else if (Array.isArray(o.folder)) folder = o.folder.map(String);
        const iterations = o.iterations === undefined || o.iterations === null ? 1 : Number(o.iterations);
        if (!Number.isInteger(iterations) || iterations < 1 || iterations > 100_000) throw new Error('postman.run: iterations must be a whole number from 1');
        const vars = stringVars(o.vars, 'postman.run vars');
        let report: PostmanRunReport;
        try {
          report = await runPostmanCollection({
            collection,
            environment,
            folder,
            iterations,
            vars,
            resolveUrl,
            timeoutRequestMs: luaDurationMs(o.timeout, 'postman.run timeout'),
            signal: ctx.signal,
          });
        } catch (err) {
          throw new Error(`postman.run ${o.collection}: ${(err as Error).message}`);
        }
        for (const f of report.failures) ctx.log('warn', `postman: ${f.name}: ${f.message}`);
        return {
          passed: report.passed,
          iterations,
          executions: report.executions.map((e) => ({ ...e, time_ms: e.timeMs })),
          report: {
            requests: report.requests,
            assertions: report.assertions,
            failures: report.failures,
            executions: report.executions.map((e) => ({
              name: e.name,
              iteration: e.iteration,
              method: e.method,
              url: e.url,
              code: e.code,
              time_ms: e.timeMs,
              error: e.error,
              assertions: e.assertions,
            })),
          },
        };
      },
    },
  };
}
