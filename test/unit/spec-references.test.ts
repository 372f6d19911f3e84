import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { findReferences, resolveReferences } from '../../src/spec/references';
import { didYouMean, editDistance } from '../../src/spec/did-you-mean';
import { splitCommand } from '../../src/spec/split-command';

describe('references', () => {
  test('findReferences lists every ${name.field}, including named ports, and nothing else', () => {
    assert.deepEqual(findReferences('postgres at ${db.host}:${db.port}, grpc ${api.ports.grpc}; not ${HOME} nor $db.url'), [
      { name: 'db', field: 'host', raw: '${db.host}' },
      { name: 'db', field: 'port', raw: '${db.port}' },
      { name: 'api', field: 'ports.grpc', raw: '${api.ports.grpc}' },
    ]);
    assert.deepEqual(findReferences('plain'), []);
  });

  test('resolveReferences replaces each reference with what the resolver returns', () => {
    const seen: string[] = [];
    const out = resolveReferences('${db.url}?x=${users-db.user}&h=${HOME}', (name, field) => {
      seen.push(`${name}/${field}`);
      return `<${name}:${field}>`;
    });
    assert.equal(out, '<db:url>?x=<users-db:user>&h=${HOME}');
    assert.deepEqual(seen, ['db/url', 'users-db/user']);
  });
});

describe('did you mean', () => {
  test('edit distance', () => {
    assert.equal(editDistance('kitten', 'sitting'), 3);
    assert.equal(editDistance('', 'abc'), 3);
    assert.equal(editDistance('replcias', 'replicas'), 2);
  });

  test('suggests close names only', () => {
    assert.equal(didYouMean('replcias', ['name', 'replicas', 'ready']), 'replicas');
    assert.equal(didYouMean('Image', ['image']), 'image');
    assert.equal(didYouMean('colour', ['name', 'port', 'image']), undefined);
  });
});

describe('splitCommand', () => {
  test('splits like a shell for plain words and quotes', () => {
    assert.deepEqual(splitCommand(`node  server.js --name 'a b' "c \\"d\\"" e\\ f ''`), { argv: ['node', 'server.js', '--name', 'a b', 'c "d"', 'e f', ''] });
    assert.deepEqual(splitCommand('echo "unterminated'), { error: 'unterminated double quote' });
    assert.deepEqual(splitCommand('   '), { argv: [] });
  });
});
