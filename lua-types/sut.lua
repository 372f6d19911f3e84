---@meta sut
-- require("sut"): the system under test.

---@class topas.ServiceInfo
---@field name string
---@field kind "service"|"database"
---@field replicas integer
---@field ready boolean
---@field endpoints table<string, string>

---@class topas.ApplyServiceOptions
---@field image? string
---@field version? string
---@field replicas? integer
---@field env? table<string, string>

---@class topas.KillOptions
---@field signal? string default "SIGKILL"
---@field replica? integer which replica (1-based); default: any

---@class topas.ExecResult
---@field code integer
---@field stdout string
---@field stderr string

---@class topas.sut
local sut = {}

---Services and databases of the SUT.
---@return topas.ServiceInfo[]
function sut.services() end

---Base URL of a service reachable from the scenario (`"http://127.0.0.1:49153"`),
---or for a database `"postgres://user:pw@host:port/db"`. A port marked `tls: true`
---in the app spec gives `"https://..."`; a named port gives `"host:port"`
---(`"https://host:port"` when it is marked `tls: true`).
---@param name string
---@param port? string|integer a named or numbered port
---@return string
function sut.endpoint(name, port) end

---Changes a running service (version, image, replicas, env); returns once
---rolled out, replacing replicas one by one.
---@param name string
---@param change topas.ApplyServiceOptions
function sut.apply_service(name, change) end

---Blocks until every replica is ready.
---@param name string
---@param timeout? topas.Duration
function sut.wait_ready(name, timeout) end

---@param name string
---@param n integer
function sut.scale(name, n) end

---@param name string
function sut.stop(name) end

---@param name string
function sut.start(name) end

---Restarts all replicas, one by one.
---@param name string
function sut.restart(name) end

---Fault injection: one replica dies without a graceful stop (and is replaced).
---@param name string
---@param opts? topas.KillOptions
function sut.kill(name, opts) end

---@param name string
---@param opts? {tail?: integer}
---@return string
function sut.logs(name, opts) end

---Runs a command inside the service (where the backend can).
---@param name string
---@param argv string[]
---@return topas.ExecResult
function sut.exec(name, argv) end

return sut
