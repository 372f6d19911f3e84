import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { postmanToLua } from '../../src/import/postman-import';
import { writeLuaScenario } from '../../src/import/lua-writer';
import { parseLua } from '../../src/export/lua-ast';
import { buildFlowModel } from '../../src/export/flow-builder';

describe('import: the Lua writer', () => {
  test('a value set from a response by a Postman test becomes a local used by later requests', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-import-'));
    const file = path.join(dir, 'c.postman_collection.json');
    fs.writeFileSync(
      file,
      JSON.stringify({
        info: { name: 'c', schema: 'https://schema.getpostman.com/json/collection/v2.1.0/collection.json' },
        variable: [{ key: 'baseUrl', value: 'http://api' }],
        item: [
          {
            name: 'login',
            request: { method: 'POST', url: '{{baseUrl}}/login', body: { mode: 'raw', raw: '{"user":"a"}', options: { raw: { language: 'json' } } } },
            event: [{ listen: 'test', script: { exec: ['pm.environment.set("auth", pm.response.json().data.token);', 'pm.test("is 200", function () { pm.response.to.have.status(200); });'] } }],
          },
          { name: 'me', request: { method: 'GET', url: '{{baseUrl}}/me', header: [{ key: 'Authorization', value: 'Bearer {{auth}}' }] } },
        ],
      }),
    );
    const { source, dropped } = postmanToLua({ collection: file });
    assert.deepEqual(dropped, []);
    assert.match(source, /local auth = r1:json\(\)\.data\.token/);
    assert.match(source, /\["authorization"\] = "Bearer " \.\. auth/);
    assert.match(source, /check\("is 200", r1\.code == 200\)/);
    // and it reads back through the exporter's model without anything left out
    const { chunk } = parseLua(source, 'x.lua');
    const m = buildFlowModel(chunk!);
    assert.deepEqual(m.skipped, []);
    assert.equal(m.flow.filter((s) => s.k === 'request').length, 2);
  });

  test('JSON bodies become tables, other bodies strings; odd header names are quoted', () => {
    const src = writeLuaScenario(
      [
        { name: 'a', method: 'POST', url: 'http://h.test/a', headers: [['X-Weird.Name', '1']], body: { text: '{"end":1,"list":[1,2]}', mimeType: 'application/json' } },
        { name: 'b', method: 'PUT', url: 'http://h.test/b', headers: [], body: { text: 'plain "text"', mimeType: 'text/plain' } },
        { name: 'c', method: 'OPTIONS', url: 'http://h.test/c', headers: [] },
      ],
      { header: ['t'] },
    );
    assert.match(src, /net\.post\(base \.\. "\/a", \{ \["end"\] = 1, list = \{ 1, 2 \} \}, \{ headers = \{ \["x-weird\.name"\] = "1" \}, name = "a" \}\)/);
    assert.match(src, /net\.put\(base \.\. "\/b", "plain \\"text\\"", \{ name = "b" \}\)/);
    assert.match(src, /net\.request\{ method = "OPTIONS", url = base \.\. "\/c", name = "c" \}/);
    assert.deepEqual(parseLua(src, 'x.lua').problems, []);
  });
});
