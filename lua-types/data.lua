---@meta data
-- Data files, available without require (`data`, `open`); `require("data")`
-- returns the same table. Paths are relative to the scenario's folder and
-- never leave the project folder (symlinks included).
--
-- `data.csv` and `data.json` parse a file once per worker thread and share it
-- by every scenario and VU there (k6's SharedArray): what a script gets is a
-- read-only proxy whose rows are fetched when indexed, so 1,000 VUs reading a
-- 50 MB file cost the file once, not 1,000 copies. Each `rows[i]` is a fresh
-- copy of that row (changing it changes nothing shared); assigning into the
-- shared table raises an error. `#rows`, `ipairs` and `pairs` work; `next`
-- and `json.encode` see an empty table (copy the rows you need first).

---@class topas.CsvOptions
---@field header? boolean first line names the fields: rows are tables keyed by them (default false: rows are lists)
---@field separator? string one ASCII character (default ",")

---@class topas.Data
data = {}

---Rows of a CSV file (RFC 4180: quoted fields may hold separators, newlines and `""`).
---A UTF-8 byte order mark and blank lines are skipped; CRLF line ends are fine.
---@param path string relative to the scenario's folder
---@param opts? topas.CsvOptions
---@return table<integer, table<string, string>|string[]> rows read-only; `rows[i]` is a fresh copy
function data.csv(path, opts) end

---A JSON file's value. A list or object comes back as a read-only proxy
---(elements converted on access); a string, number or boolean as itself.
---@param path string relative to the scenario's folder
---@return any
function data.json(path) end

---The text of a file, relative to the scenario's folder (inside the project; at most 256 MiB).
---Each call copies the text into the calling scenario: use `data.*` for big files.
---@param path string
---@return string
function open(path) end

return data
