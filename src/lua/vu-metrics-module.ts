import type { LuaModuleInstance } from './modules';

/** Where `require("metrics")` sends custom samples (the worker's MetricsRegistry). */
export interface CustomMetricsSink {
  define(name: string, type: 'counter' | 'trend' | 'rate' | 'gauge'): void;
  add(name: string, value: number | boolean, tags?: Record<string, string>): void;
}

/**
 * require("metrics"): k6-style custom metrics. `metrics.counter(name)`,
 * `metrics.trend(name)`, `metrics.rate(name)`, `metrics.gauge(name)` return
 * objects with `:add(value [, tags])`; names show in the summary and can carry
 * thresholds.
 */
const METRICS_SHIM = String.raw`
local js, h = ...
local M = {}
local function maker(kind)
  local mt = { __name = "metrics." .. kind }
  mt.__index = mt
  mt.__tostring = function(m) return "metrics." .. kind .. "(" .. m.name .. ")" end
  function mt.add(self, v, tags)
    if getmetatable(self) ~= mt then h.raise("metrics." .. kind .. ": call add with ':' (m:add(v))") end
    if v == nil then v = (kind == "counter") and 1 or v end
    js.add(self.name, v, tags)
  end
  return function(name)
    js.define(name, kind)
    return setmetatable({ name = name }, mt)
  end
end
M.counter = maker("counter")
M.trend = maker("trend")
M.rate = maker("rate")
M.gauge = maker("gauge")
return M
`;

export function createVuMetricsModule(sink: CustomMetricsSink): LuaModuleInstance {
  return {
    shim: METRICS_SHIM,
    exports: {
      define: (name: unknown, kind: unknown) => {
        if (typeof name !== 'string' || name === '') throw new Error(`metrics.${String(kind)}: expected a metric name (string), got ${name === null || name === undefined ? 'nil' : typeof name}`);
        sink.define(name, kind as 'counter');
      },
      add: (name: unknown, value: unknown, tags: unknown) => {
        if (typeof value !== 'number' && typeof value !== 'boolean') throw new Error(`metrics "${String(name)}": add expects a number or a boolean, got ${value === null || value === undefined ? 'nil' : typeof value}`);
        let t: Record<string, string> | undefined;
        if (tags && typeof tags === 'object') {
          t = {};
          for (const [k, v] of Object.entries(tags as Record<string, unknown>)) t[k] = String(v);
        }
        sink.add(String(name), value, t);
      },
    },
  };
}
