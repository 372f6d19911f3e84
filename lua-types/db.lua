---@meta db
-- require("db"): SQL state in PostgreSQL.

---@class topas.DbTarget
---@field host string
---@field port integer
---@field user string
---@field password string
---@field db string

---@class topas.SeedSpec
---@field table string
---@field rows table<string, any>[]

---@class topas.ExpectRowsSpec
---@field table string
---@field where table<string, any>
---@field count? integer exactly this many rows (default: at least one)

---A database connection.
---@class topas.DbConnection
local Connection = {}

---Rows as tables keyed by column name; `$1`-style params.
---@param sql string
---@param params? any[]
---@return table<string, any>[]
function Connection:query(sql, params) end

---Number of affected rows.
---@param sql string
---@param params? any[]
---@return integer
function Connection:exec(sql, params) end

---Inserts rows.
---@param spec topas.SeedSpec
function Connection:seed(spec) end

---Raises unless rows match `where` (exactly `count` of them when given).
---@param spec topas.ExpectRowsSpec
function Connection:expect(spec) end

---Empties the tables.
---@param ... string table names
function Connection:truncate(...) end

---Runs `fn` in a transaction: committed when it returns, rolled back when it raises.
---@generic T
---@param fn fun(c: topas.DbConnection): T
---@return T
function Connection:transaction(fn) end

---Closed at the end of the scenario anyway.
function Connection:close() end

---@class topas.db
local db = {}

---Connects to a database of the app spec by name (no argument: the app's only
---database) or to an explicit address.
---@param target? string|topas.DbTarget
---@return topas.DbConnection
function db.connect(target) end

---`seed` on the connection made by the last `db.connect`.
---@param spec topas.SeedSpec
function db.seed(spec) end

---`expect` on the connection made by the last `db.connect`.
---@param spec topas.ExpectRowsSpec
function db.expect(spec) end

---`query` on the connection made by the last `db.connect`.
---@param sql string
---@param params? any[]
---@return table[]
function db.query(sql, params) end

---`exec` on the connection made by the last `db.connect`.
---@param sql string
---@param params? any[]
---@return integer
function db.exec(sql, params) end

---`transaction` on the connection made by the last `db.connect`: commit when
---`fn` returns, roll back when it raises.
---@param fn fun(c: topas.DbConnection): any
---@return any
function db.transaction(fn) end

return db
