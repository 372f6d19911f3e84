---@meta postman
-- require("postman"): run Postman collections in-process.

---@class topas.PostmanRunOptions
---@field collection string path of the collection JSON
---@field environment? string path of an environment JSON
---@field folder? string run only this folder
---@field iterations? integer
---@field vars? table<string, string> `{{name}}` variables; values may name services
---@field timeout? string|number per-request timeout

---@class topas.PostmanFailure
---@field name string
---@field message string

---@class topas.PostmanReport
---@field requests integer
---@field assertions integer
---@field failures topas.PostmanFailure[]

---@class topas.postman
local postman = {}

---@param opts topas.PostmanRunOptions
---@return boolean passed
---@return topas.PostmanReport report
function postman.run(opts) end

---Replays the collection's requests without newman (the fast path used under
---load): each request and each Postman test becomes a check.
---@param opts topas.PostmanRunOptions
---@return boolean passed
---@return topas.PostmanReport report
function postman.replay(opts) end

return postman
