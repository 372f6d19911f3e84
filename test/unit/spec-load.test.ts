import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { TopasError } from '../../src/errors';
import { loadAppSpec, parseAppSpec } from '../../src/spec/load-app-spec';

const FIXTURES = path.resolve(__dirname, '../../../fixtures/specs');
const fixture = (name: string) => path.join(FIXTURES, name);

/** The TopasError a call throws (fails the test if it does not throw one). */
function thrown(fn: () => unknown): TopasError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof TopasError, `expected a TopasError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected an error');
}

async function thrownAsync(p: Promise<unknown>): Promise<TopasError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof TopasError, `expected a TopasError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected an error');
}

const problemLines = (e: TopasError) => e.problems.map((p) => `${p.path}: ${p.message}`);

const parse = (yaml: string, env: Record<string, string> = {}) => parseAppSpec(yaml, path.join(os.tmpdir(), 'topas.yaml'), { env });

describe('loadAppSpec fixtures', () => {
  test('the plain and the kind: App forms normalize to the same AppSpec', async () => {
    const plain = await loadAppSpec(fixture('valid-plain.yaml'), { env: {} });
    const kind = await loadAppSpec(fixture('valid-kind-app.yaml'), { env: {} });
    assert.equal(plain.file, fixture('valid-plain.yaml'));
    assert.equal(plain.dir, FIXTURES);
    const { file: _a, ...plainRest } = plain;
    const { file: _b, ...kindRest } = kind;
    assert.deepEqual(kindRest, plainRest);
  });

  test('normalizes fields, defaults and implied dependencies', async () => {
    const spec = await loadAppSpec(fixture('valid-plain.yaml'), { env: {} });
    assert.equal(spec.name, 'shop');
    const api = spec.services.find((s) => s.name === 'api')!;
    assert.deepEqual(api.command, ['node', 'fixtures/apps/mock-app/server.js']);
    assert.equal(api.replicas, 2);
    assert.deepEqual(api.ports, { grpc: 50051 });
    assert.deepEqual(api.ready, { kind: 'http', path: '/healthz', timeoutMs: 20_000 });
    assert.equal(api.env.DATABASE_URL, '${db.url}', 'references stay unresolved for the backend');
    assert.deepEqual(api.dependsOn.sort(), ['db', 'echo']);
    const echo = spec.services.find((s) => s.name === 'echo')!;
    assert.deepEqual(echo.command, ['node', 'fixtures/apps/mock-app/server.js', '--mode', 'echo server']);
    assert.deepEqual(echo.ready, { kind: 'log', pattern: 'listening', timeoutMs: 30_000 });
    assert.equal(echo.replicas, 1);
    const worker = spec.services.find((s) => s.name === 'worker')!;
    assert.equal(worker.replicas, 0);
    assert.deepEqual(worker.env, { API_GRPC: '${api.ports.grpc}' }, 'envVars is an alias of env');
    assert.deepEqual(worker.dependsOn, ['db', 'api']);
    const db = spec.databases[0];
    assert.equal(db.engine, 'postgres');
    assert.equal(db.port, 5432);
    assert.deepEqual(db.credentials, { user: 'admin', password: 'secret', dbname: 'testdb' });
    assert.match(db.initSQL ?? '', /CREATE TABLE users/);
  });

  test('three-mistakes.yaml reports exactly its three problems, with paths, at once', async () => {
    const e = await thrownAsync(loadAppSpec(fixture('three-mistakes.yaml'), { env: {} }));
    assert.equal(e.code, 'INVALID_APP_SPEC');
    assert.equal(e.exitCode, 2);
    assert.deepEqual(problemLines(e), [
      'services[0].port: expected integer 1-65535, got "80a"',
      'services[0].replcias: unknown field; did you mean "replicas"?',
      'services[0].env.DATABASE_URL: ${users-db.url}: no service or database named "users-db"',
    ]);
    assert.match(e.format(), /3 problems/);
  });

  test('a YAML syntax error is INVALID_APP_SPEC with file:line:col', async () => {
    const e = await thrownAsync(loadAppSpec(fixture('broken-yaml.yaml'), { env: {} }));
    assert.equal(e.code, 'INVALID_APP_SPEC');
    assert.match(e.message, /broken-yaml\.yaml:5:5: YAML syntax error/);
    assert.match(e.problems[0].path, /broken-yaml\.yaml:5:5$/);
  });

  test('a dependency cycle is a problem naming the cycle', async () => {
    const e = await thrownAsync(loadAppSpec(fixture('cycle.yaml'), { env: {} }));
    assert.deepEqual(problemLines(e), ['services: dependency cycle api -> worker -> api']);
  });

  test('a missing file is FILE_NOT_FOUND; a folder means its topas.yaml', async () => {
    const e = await thrownAsync(loadAppSpec(fixture('nope.yaml')));
    assert.equal(e.code, 'FILE_NOT_FOUND');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-spec-'));
    try {
      fs.writeFileSync(path.join(dir, 'topas.yaml'), 'name: x\nservices: [{ name: a, command: "node a.js", port: 80 }]\n');
      const spec = await loadAppSpec(dir, { env: {} });
      assert.equal(spec.file, path.join(dir, 'topas.yaml'));
      assert.equal((await thrownAsync(loadAppSpec(path.join(dir, 'missing')))).code, 'FILE_NOT_FOUND');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('parseAppSpec validation', () => {
  test('collects problems from every entry, in file order', () => {
    const e = thrown(() =>
      parse(`
name: Shop_App
services:
  - name: api
    command: [node, a.js]
    port: 8080
    replicas: -1
    ready: { http: healthz, timeout: soon }
  - name: api
    port: 70000
    imgae: x
    env: { GOOD: 1, "bad-name": x }
databases:
  - name: db
    engine: mysql
    credentials: { user: u, pasword: p }
    colour: blue
`),
    );
    assert.deepEqual(problemLines(e), [
      'name: expected a name of lowercase letters, digits and "-" (starting with a letter, at most 63 characters), got "Shop_App"',
      'services[0].replicas: expected integer 0-100, got -1',
      'services[0].ready.http: expected a path starting with "/", got "healthz"',
      'services[0].ready.timeout: expected a duration like "30s", "500ms" or "2m", got "soon"',
      'services[1]: needs an image (docker, kubernetes backends) or a command (local backend)',
      'services[1].name: duplicate name "api" (also used by services[0])',
      'services[1].port: expected integer 1-65535, got 70000',
      'services[1].imgae: unknown field; did you mean "image"?',
      'services[1].env["bad-name"]: expected an environment variable name (letters, digits, "_"), got "bad-name"',
      'databases[0].engine: expected "postgres" (the only engine supported), got "mysql"',
      'databases[0].credentials.pasword: unknown field; did you mean "password"?',
      'databases[0].colour: unknown field',
    ]);
  });

  test('required fields and wrong types', () => {
    const e = thrown(() => parse('services:\n  - command: x\n  - 42\ndatabases: {}\n'));
    assert.deepEqual(problemLines(e), [
      'services[0].name: required field is missing',
      'services[0].port: required field is missing',
      'services[1]: expected a mapping, got 42',
      'databases: expected a list, got a mapping',
    ]);
  });

  test('references: unknown names and fields, with suggestions; named ports', () => {
    const e = thrown(() =>
      parse(`
services:
  - name: api
    image: a
    port: 80
    ports: { grpc: 9000 }
    ready: { tcp: true, port: metrics }
  - name: web
    image: w
    port: 81
    command: ["web", "--api=\${api.urll}", "--grpc=\${api.ports.grpcc}"]
    env:
      DB: \${dbb.url}
      USER: \${db.usr}
      OK: \${api.ports.grpc} \${db.password} \${web.port}
databases:
  - name: db
`),
    );
    assert.deepEqual(problemLines(e), [
      'services[0].ready.port: no port named "metrics"; named ports: grpc',
      'services[1].command[1]: ${api.urll}: unknown field "urll" of service "api"; expected one of url, host, port, name, ports.<name>; did you mean "url"?',
      'services[1].command[2]: ${api.ports.grpcc}: service "api" has no port named "grpcc"; its named ports: grpc; did you mean "grpc"?',
      'services[1].env.DB: ${dbb.url}: no service or database named "dbb"; did you mean "db"?',
      'services[1].env.USER: ${db.usr}: unknown field "usr" of database "db"; expected one of url, host, port, user, password, dbname, name; did you mean "user"?',
    ]);
  });

  test('references add implied depends_on (not to itself); a named ready port resolves to its number', () => {
    const spec = parse(`
services:
  - name: api
    image: a
    port: 80
    ports: { admin: 9090 }
    ready: { http: /health, port: admin }
    env: { SELF: "\${api.url}", DB: "\${db.host}:\${db.port}" }
    command: "serve --cache \${cache.url}"
    depends_on: [cache]
  - name: cache
    image: c
    port: 6379
databases:
  - { name: db }
`);
    const api = spec.services[0];
    assert.deepEqual(api.dependsOn, ['cache', 'db']);
    assert.deepEqual(api.ready, { kind: 'http', path: '/health', timeoutMs: 30_000, port: 9090 });
    assert.deepEqual(api.command, ['serve', '--cache', '${cache.url}']);
    assert.deepEqual(spec.services[1].ready, { kind: 'tcp', timeoutMs: 30_000 }, 'default readiness is tcp');
    assert.deepEqual(spec.databases[0].credentials, { user: 'postgres', password: 'postgres', dbname: 'db' });
    assert.deepEqual(spec.databases[0].ready, { timeoutMs: 30_000 });
  });

  test('depends_on must name something that exists, other than itself', () => {
    const e = thrown(() => parse('services:\n  - { name: api, image: a, port: 80, depends_on: [api, postgress] }\ndatabases:\n  - { name: postgres }\n'));
    assert.deepEqual(problemLines(e), [
      'services[0].depends_on[0]: a service cannot depend on itself',
      'services[0].depends_on[1]: no service or database named "postgress"; did you mean "postgres"?',
    ]);
  });

  test('names are unique across services and databases', () => {
    const e = thrown(() => parse('services:\n  - { name: db, image: a, port: 80 }\ndatabases:\n  - { name: db }\n'));
    assert.deepEqual(problemLines(e), ['services[0].name: duplicate name "db" (also used by databases[0])']);
  });

  test('ready forms: log, none, timeout only, and their mistakes', () => {
    const ok = parse(`
services:
  - { name: a, image: a, port: 80, ready: { log: "listening on", timeout: 1m } }
  - { name: b, image: b, port: 81, ready: false }
  - { name: c, image: c, port: 82, ready: { timeout: 5s } }
`);
    assert.deepEqual(
      ok.services.map((s) => s.ready),
      [
        { kind: 'log', pattern: 'listening on', timeoutMs: 60_000 },
        { kind: 'none', timeoutMs: 30_000 },
        { kind: 'tcp', timeoutMs: 5_000 },
      ],
    );
    const e = thrown(() => parse('services:\n  - { name: a, image: a, port: 80, ready: { http: /h, tcp: true, timout: 3s } }\n'));
    assert.deepEqual(problemLines(e), [
      'services[0].ready: choose one of http, tcp, log, none; got http and tcp',
      'services[0].ready.timout: unknown field; did you mean "timeout"?',
    ]);
  });

  test('the kind: App form reports paths under spec and checks apiVersion/kind', () => {
    const e = thrown(() =>
      parse(`
apiVersion: topas.dev/v2
kind: App
metadata: { name: shop, namespce: x }
spec:
  services:
    - { name: api, image: a, port: "80a" }
`),
    );
    assert.deepEqual(problemLines(e), [
      'apiVersion: expected "topas.dev/v1", got "topas.dev/v2"',
      'metadata.namespce: unknown field',
      'spec.services[0].port: expected integer 1-65535, got "80a"',
    ]);
  });

  test('initSQLFile is read relative to the spec and inlined; missing or doubled is a problem', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-spec-'));
    try {
      fs.mkdirSync(path.join(dir, 'sql'));
      fs.writeFileSync(path.join(dir, 'sql', 'init.sql'), 'CREATE TABLE t (id int);\n');
      const file = path.join(dir, 'topas.yaml');
      const spec = parseAppSpec('databases:\n  - { name: db, initSQLFile: sql/init.sql }\n', file, { env: {} });
      assert.equal(spec.databases[0].initSQL, 'CREATE TABLE t (id int);\n');
      assert.equal(spec.name, path.basename(dir).toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/^[^a-z]+/, '').replace(/-+$/, '') || 'app');
      const e = thrown(() =>
        parseAppSpec('databases:\n  - { name: db, initSQLFile: nope.sql }\n  - { name: db2, initSQL: "select 1", initSQLFile: sql/init.sql }\n', file, { env: {} }),
      );
      assert.deepEqual(problemLines(e), [
        `databases[0].initSQLFile: file not found: ${path.join(dir, 'nope.sql')}`,
        'databases[1].initSQLFile: use either initSQL or initSQLFile, not both',
      ]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('${VAR} placeholders come from opts.env; unset ones are problems; $${ escapes', () => {
    const spec = parse(
      'services:\n  - name: api\n    image: ${REGISTRY}/api\n    version: ${TAG:-latest}\n    port: 80\n    env: { LIT: "$${HOME}", DB: "${db.url}" }\ndatabases: [{ name: db }]\n',
      { REGISTRY: 'ghcr.io/acme' },
    );
    assert.equal(spec.services[0].image, 'ghcr.io/acme/api');
    assert.equal(spec.services[0].version, 'latest');
    assert.equal(spec.services[0].env.LIT, '${HOME}');
    assert.equal(spec.services[0].env.DB, '${db.url}');
    const e = thrown(() => parse('services:\n  - { name: api, image: "${REGISTRY}/api", port: 80 }\n'));
    assert.deepEqual(problemLines(e), ['services[0].image: environment variable REGISTRY is not set (write ${REGISTRY:-default} for a default)']);
  });

  test('versions must not lose digits to YAML number parsing; commands may be strings with quotes', () => {
    const e = thrown(() => parse('services:\n  - { name: api, image: a, version: 1.10, port: 80, command: "node \'unterminated" }\n'));
    assert.deepEqual(problemLines(e), [
      'services[0].version: expected a string (quote it: "1.1"), got 1.1',
      'services[0].command: unterminated single quote in "node \'unterminated"',
    ]);
    const ok = parse('services:\n  - { name: api, image: a, version: 2, port: "8080", command: \'sh -c "echo \\"hi there\\""\' }\n');
    assert.equal(ok.services[0].version, '2');
    assert.equal(ok.services[0].port, 8080);
    assert.deepEqual(ok.services[0].command, ['sh', '-c', 'echo "hi there"']);
  });

  test('empty and non-mapping documents', () => {
    assert.equal(thrown(() => parse('')).code, 'INVALID_APP_SPEC');
    assert.deepEqual(problemLines(thrown(() => parse('- a\n- b\n'))), ['(root): expected a mapping at the top level, got a list']);
    assert.deepEqual(problemLines(thrown(() => parse('name: x\n'))), ['services: define at least one service or database']);
    assert.deepEqual(problemLines(thrown(() => parse('name: x\nservices: []\nservics: []\n'))), ['servics: unknown field; did you mean "services"?']);
  });

  test('duplicate YAML keys are syntax errors with a location', () => {
    const e = thrown(() => parse('name: a\nname: b\nservices: []\n'));
    assert.match(e.problems[0].path, /topas\.yaml:2:1$/);
    assert.match(e.problems[0].message, /unique/);
  });
});

describe('the backend\'s checks beside the spec\'s own problems', () => {
  const file = path.join(os.tmpdir(), 'topas.yaml');
  const yaml = [
    'services:',
    '  - name: api',
    '    port: 8080',
    '    image: a',
    '    tls: maybe',
    '  - name: nameless-port',
    '    image: b',
    '  - name: web',
    '    image: c',
    '    port: 8081',
    '',
  ].join('\n');

  test('the checks see the entries that parse (a bad optional field left out) and their paths point into the file', () => {
    const seen: string[][] = [];
    const e = thrown(() =>
      parseAppSpec(yaml, file, {
        backendChecks: {
          backend: 'test',
          problems: (spec) => {
            seen.push(spec.services.map((s) => s.name));
            return spec.services.map((s, i) => ({ path: `services[${i}].image`, message: `${s.name} refused` }));
          },
        },
      }),
    );
    assert.equal(e.code, 'INVALID_APP_SPEC');
    // the entry without a port does not parse: the backend is not asked about it
    assert.deepEqual(seen, [['api', 'web']]);
    assert.match(e.message, /4 problems in the app spec \(2 of them for backend test\)$/);
    assert.deepEqual(problemLines(e).filter((l) => / refused$/.test(l)), ['services[0].image: api refused', 'services[2].image: web refused']);
  });

  test('a backend problem whose path names no place in the file keeps its path as written', () => {
    const e = thrown(() => parseAppSpec(yaml, file, { backendChecks: { backend: 'test', problems: () => [{ path: 'cluster', message: 'no cluster' }] } }));
    assert.ok(problemLines(e).includes('cluster: no cluster'), problemLines(e).join('\n'));
  });

  test('a valid spec does not ask the checks (the backend raises its own when chosen); a check that throws adds nothing', () => {
    let asked = 0;
    const ok = parseAppSpec('services:\n  - name: api\n    image: a\n    port: 8080\n', file, {
      backendChecks: { backend: 'test', problems: () => (asked++, [{ path: 'services[0]', message: 'no' }]) },
    });
    assert.equal(ok.services.length, 1);
    assert.equal(asked, 0);
    const e = thrown(() => parseAppSpec(yaml, file, { backendChecks: { backend: 'test', problems: () => { throw new Error('a plugin bug'); } } }));
    assert.match(e.message, /2 problems in the app spec$/);
  });
});
