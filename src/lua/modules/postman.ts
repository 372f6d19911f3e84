import type { LuaModuleContext, LuaModuleInstance } from './module-types';
import { luaDurationMs, luaOptions } from '../lua-values';
import { createUrlResolver } from './net';
import { resolveScenarioFile } from './grpc';
import { runPostmanCollection, type PostmanRunReport } from '../../postman/newman-run';

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
return M
`;

export function createPostmanModule(ctx: LuaModuleContext): LuaModuleInstance {
  const resolveUrl = createUrlResolver(ctx.endpoints);
  return {
    shim: POSTMAN_SHIM,
    exports: {
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
        const vars: Record<string, string> = {};
        for (const [k, v] of Object.entries(luaOptions(o.vars, 'postman.run vars'))) if (v !== undefined && v !== null) vars[k] = typeof v === 'object' ? JSON.stringify(v) : String(v);
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
