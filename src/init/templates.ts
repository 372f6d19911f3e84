/**
 * What `topas init` writes. Kept as strings in code (not files on disk) so the
 * single executable carries them without any lookup.
 */

/** The app the scaffold stands up: plain Node, no packages, so `topas run` works right after `topas init`. */
export const SERVER_JS = `'use strict';
// A tiny HTTP service for topas to test. Plain Node, no dependencies.
// topas passes the port in PORT; GREETING comes from topas.yaml.
const http = require('node:http');

const PORT = Number(process.env.PORT || 8080);
const GREETING = process.env.GREETING || 'Hello';

const server = http.createServer((req, res) => {
  const url = new URL(req.url || '/', 'http://localhost');
  const send = (status, body) => {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  };
  if (url.pathname === '/healthz') return send(200, { ok: true });
  if (url.pathname === '/api/hello' && req.method === 'GET') {
    const name = url.searchParams.get('name') || 'world';
    return send(200, { message: \`\${GREETING}, \${name}!\`, pid: process.pid });
  }
  send(404, { error: 'not found', path: url.pathname });
});

// in a container set HOST=0.0.0.0
server.listen(PORT, process.env.HOST || '127.0.0.1', () => console.log(\`listening on \${server.address().port}\`));
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => server.close(() => process.exit(0)));
`;

export function topasYaml(appName: string): string {
  return `# The system under test: services and databases topas stands up.
# Reference: https://github.com/topas-dev/topas (docs: app spec)
name: ${appName}
services:
  - name: web
    # local backend: run this command (PORT is injected)
    command: ["node", "app/server.js"]
    # docker/kubernetes backends would use an image instead, e.g.
    # image: ghcr.io/you/web
    # version: "1.0.0"
    port: 8080
    replicas: 1
    env:
      GREETING: Hello
    ready: { http: /healthz, timeout: 30s }
databases:
  - name: db
    # docker/kubernetes use this image; the local backend uses embedded PostgreSQL
    image: postgres:16-alpine
    port: 5432
    credentials: { user: app, password: app-secret, dbname: app }
    initSQL: |
      CREATE TABLE greetings (id serial PRIMARY KEY, name text UNIQUE NOT NULL, text text NOT NULL);
`;
}

export const SMOKE_LUA = `-- A first scenario: \`topas run tests/smoke.lua\`
-- Services are reached by name (http://web/...), databases by db.connect("name").
local net = require("net")
local db = require("db")

step("web answers", function()
  net.wait_http("http://web/healthz", { status = 200, timeout = "30s" })
  local r = net.get("http://web/api/hello?name=topas")
  expect(r.code):to_be(200)
  check("status is 200", r.code == 200)
  local body = r:json()
  expect(body.message):to_be("Hello, topas!")
  expect(body.message):to_match("^Hello")
end)

step("database has the schema from initSQL", function()
  local c = db.connect("db")
  c:seed({ table = "greetings", rows = {
    { name = "alice", text = "hi" },
    { name = "bob", text = "hey" },
  } })
  c:expect({ table = "greetings", where = { name = "alice" }, count = 1 })
  local rows = c:query("SELECT text FROM greetings WHERE name = $1", { "bob" })
  expect(#rows):to_be(1)
  expect(rows[1].text):to_be("hey")
  c:close()
end)
`;

export const GITIGNORE_ENTRIES = ['.topas/'];

/** Globals topas defines for every scenario (LuaLS would otherwise flag them as undefined). */
export const LUA_GLOBALS = ['log', 'sleep', 'env', 'json', 'expect', 'check', 'step', 'instance', 'open', 'data', 'options', 'setup', 'iteration', 'teardown'];

/**
 * Where LuaLS looks for `require("lib.auth")`: topas resolves it beside the
 * scenario (tests/ in the scaffold), then at the project root.
 */
export const LUA_REQUIRE_PATH = ['?.lua', '?/init.lua', 'tests/?.lua', 'tests/?/init.lua'];

export function luarcJson(libraryPath: string): string {
  const config = {
    $schema: 'https://raw.githubusercontent.com/LuaLS/vscode-lua/master/setting/schema.json',
    runtime: { version: 'Lua 5.4', path: LUA_REQUIRE_PATH },
    workspace: { library: [libraryPath], checkThirdParty: false },
    diagnostics: { globals: LUA_GLOBALS },
  };
  return `${JSON.stringify(config, null, 2)}\n`;
}
