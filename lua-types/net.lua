---@meta net
-- require("net"): HTTP and gRPC. A URL's host may be a service name from the
-- app spec (`http://web/api`); it resolves to the service's endpoint.

---@class topas.HttpOptions
---@field headers? table<string, string>
---@field json? any sent as JSON with the right content-type
---@field query? table<string, string|number|boolean>
---@field timeout? topas.Duration

---@class topas.HttpRequest: topas.HttpOptions
---@field method string
---@field url string
---@field body? string|table a table is sent as JSON

---@class topas.HttpResponse
---@field code integer HTTP status code
---@field status integer same as `code`
---@field headers table<string, string> lower-case names, repeated headers joined with ", " (filled in on first use)
---@field status_text string reason phrase for `status`, e.g. "Not Found"
---@field raw_headers string the header block as received (`Name: value` lines joined by CRLF)
---@field body string
---@field time_ms number
local HttpResponse = {}

---Decodes the body as JSON.
---@return any
function HttpResponse:json() end

---@class topas.GrpcOptions
---@field proto? string path of a .proto file; without it the server's reflection is used
---@field metadata? table<string, string>
---@field timeout? topas.Duration

---@class topas.WaitHttpOptions
---@field status? integer default 200
---@field timeout? topas.Duration default "30s"

---@class topas.net
local net = {}

---@param url string
---@param opts? topas.HttpOptions
---@return topas.HttpResponse
function net.get(url, opts) end

---@param url string
---@param body? string|table a table is sent as JSON
---@param opts? topas.HttpOptions
---@return topas.HttpResponse
function net.post(url, body, opts) end

---@param url string
---@param body? string|table
---@param opts? topas.HttpOptions
---@return topas.HttpResponse
function net.put(url, body, opts) end

---@param url string
---@param body? string|table
---@param opts? topas.HttpOptions
---@return topas.HttpResponse
function net.patch(url, body, opts) end

---@param url string
---@param opts? topas.HttpOptions
---@return topas.HttpResponse
function net.delete(url, opts) end

---@param url string
---@param opts? topas.HttpOptions
---@return topas.HttpResponse
function net.head(url, opts) end

---A request with everything spelled out.
---@param req topas.HttpRequest
---@return topas.HttpResponse
function net.request(req) end

---Calls a gRPC method. `target` may be a service name. Without `opts.proto` the
---server's reflection service describes the method. A unary call returns the
---response table; a server-streaming call returns the list of messages. A
---non-OK status raises an error naming the code (e.g. `UNIMPLEMENTED (12)`).
---@param target string
---@param method string `"pkg.Service/Method"`
---@param request table
---@param opts? topas.GrpcOptions
---@return table
function net.grpc(target, method, request, opts) end

---Polls `url` until it answers with `status`; raises after `timeout`.
---@param url string
---@param opts? topas.WaitHttpOptions
function net.wait_http(url, opts) end

return net
