---@meta net
-- require("net"): HTTP and gRPC. A URL's host may be a service name from the
-- app spec (`http://web/api`); it resolves to the service's endpoint.

---TLS settings, for https:// URLs, wss:// and gRPC. Paths are relative to the scenario.
---@class topas.TlsOptions
---@field insecure? boolean skip certificate verification
---@field ca? string path of a PEM file of trusted CA certificates (instead of the system's)
---@field cert? string path of a PEM client certificate (with `key`)
---@field key? string path of the PEM private key of `cert`
---@field server_name? string the name sent (SNI) and verified, instead of the URL's host

---@class topas.HttpOptions: topas.TlsOptions
---@field headers? table<string, string>
---@field json? any sent as JSON with the right content-type
---@field query? table<string, string|number|boolean>
---@field timeout? topas.Duration
---@field cookies? boolean false: neither send the jar's cookies nor store the response's (default true)
---@field name? string the request's name in load metrics (default: the URL as written)

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

---@class topas.GrpcOptions: topas.TlsOptions
---@field proto? string path of a .proto file; without it the server's reflection is used
---@field metadata? table<string, string>
---@field timeout? topas.Duration the whole call, reflection included
---@field tls? boolean true: TLS even without other TLS options; false: plaintext even on a port marked `tls: true`
---@field name? string the call's name in load metrics

---@class topas.WsOptions: topas.TlsOptions
---@field headers? table<string, string> sent with the handshake
---@field protocols? string|string[] subprotocols offered (`Sec-WebSocket-Protocol`)
---@field timeout? topas.Duration handshake timeout and the default of `receive` (default "60s")
---@field cookies? boolean false: the cookie jar is not sent with the handshake
---@field name? string the connection's name in load metrics (default: the URL as written)

---A WebSocket connection from `net.ws`.
---@class topas.WebSocket
---@field url string the URL as given
---@field protocol string the subprotocol the server chose ("" when none)
local WebSocket = {}

---Sends a text message; a table is sent as JSON.
---@param data string|table
function WebSocket:send(data) end

---The next message (text), waiting up to `timeout` (default: the connection's
---`timeout`); nil and "timeout", or nil and "closed" once the connection is closed
---and every message is read.
---@param timeout? topas.Duration
---@return string|nil message
---@return "timeout"|"closed"|nil reason
function WebSocket:receive(timeout) end

---Closes the connection (also done when the scenario ends).
function WebSocket:close() end

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

---Calls a gRPC method. `target` may be a service name (its `grpc` port), `name:port`,
---`host:port`, or `https://host:port` / `grpcs://` (TLS). Without `opts.proto` the
---server's reflection service describes the method. A unary call returns the
---response table; a server-streaming call returns the list of messages. A
---client-streaming method takes a list of messages as `request` and returns the
---response; a bidirectional one takes a list, sends it all, and returns the list
---of messages the server sent. A port marked `tls: true` in the app spec is
---called over TLS. A non-OK status raises an error naming the code (e.g.
---`UNIMPLEMENTED (12)`).
---@param target string
---@param method string `"pkg.Service/Method"`
---@param request table a message, or a list of messages for a client- or bidi-streaming method
---@param opts? topas.GrpcOptions
---@return table
function net.grpc(target, method, request, opts) end

---The cookies of this scenario's jar (one per VU under load) as name -> value:
---those a request to `url` would send, or every cookie when `url` is nil.
---The jar works like a browser's: Set-Cookie is honoured by domain, path,
---expiry, Max-Age and Secure, and matching cookies are sent back.
---@param url? string
---@return table<string, string>
function net.cookies(url) end

---Empties this scenario's cookie jar.
function net.clear_cookies() end

---Opens a WebSocket connection (`ws://` or `wss://`; the host may be a service
---name). Raises when the handshake fails. Under `topas load` it counts in
---`ws_connecting`, `ws_msgs_sent` and `ws_msgs_received`.
---@param url string
---@param opts? topas.WsOptions
---@return topas.WebSocket
function net.ws(url, opts) end

---Polls `url` until it answers with `status`; raises after `timeout`.
---@param url string
---@param opts? topas.WaitHttpOptions
function net.wait_http(url, opts) end

return net
