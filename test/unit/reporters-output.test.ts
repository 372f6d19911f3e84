import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { TopasError } from '../../src/errors';
import { getReporter, registerReporter, reporterNames } from '../../src/reporters/index';
import type { RunReport } from '../../src/reporters/run-report';
import type { ScenarioResult } from '../../src/run/scenario-types';

const instance = { id: 'x#1', role: 'x', index: 1, count: 1, params: {} };

function scenario(over: Partial<ScenarioResult>): ScenarioResult {
  return { runId: 'r1', name: 's', file: 'tests/s.lua', instance, state: 'passed', startedAt: '2025-01-31T12:00:00.000Z', durationMs: 1234, steps: [], checks: [], ...over };
}

const TRACEBACK = 'stack traceback:\n\t[C]: in function \'error\'\n\ttests/checkout.lua:42: in function <tests/checkout.lua:40>';

const report: RunReport = {
  runId: '20250131-120000-000-10-abcdef',
  app: 'shop',
  backend: 'local',
  startedAt: '2025-01-31T12:00:00.000Z',
  durationMs: 4200,
  state: 'failed',
  results: [
    scenario({
      name: 'smoke',
      file: 'tests/smoke.lua',
      steps: [{ name: 'health', state: 'passed', durationMs: 12, checks: [{ name: 'status 200', passed: 3, failed: 0 }] }],
      checks: [{ name: 'status 200', passed: 3, failed: 0 }],
    }),
    scenario({
      name: 'checkout',
      file: 'tests/checkout.lua',
      state: 'failed',
      steps: [
        { name: 'add to cart', state: 'passed', durationMs: 30, checks: [] },
        {
          name: 'pay <card> & "confirm"',
          state: 'failed',
          durationMs: 45,
          checks: [{ name: 'paid', passed: 0, failed: 1 }],
          error: { name: 'LuaError', message: 'expected status 200, got 500 from postgres://admin:s3cret@db/x', location: 'tests/checkout.lua:42', stack: TRACEBACK },
        },
        { name: 'receipt', state: 'skipped', durationMs: 0, checks: [] },
      ],
      checks: [{ name: 'paid', passed: 0, failed: 1 }],
      error: { name: 'LuaError', message: 'expected status 200, got 500 from postgres://admin:s3cret@db/x', location: 'tests/checkout.lua:42', stack: TRACEBACK },
    }),
    scenario({ name: 'no-steps', file: 'tests/no-steps.lua', state: 'timedOut', error: { name: 'TopasError', code: 'TIMEOUT', message: 'scenario timed out after 5s', location: 'tests/no-steps.lua:7' } }),
  ],
};

const mask = (s: string) => s.split('s3cret').join('***');
const plain = { color: false, mask };

/**
 * A strict little XML checker: one root, balanced tags, quoted attributes with
 * no raw `<` or `&`, known entities only. Returns the elements as a tree.
 */
interface XmlElement {
  name: string;
  attrs: Record<string, string>;
  children: XmlElement[];
  text: string;
}

function decode(s: string): string {
  return s.replace(/&(#\d+|amp|lt|gt|quot|apos);/g, (_m, e: string) =>
    e.startsWith('#') ? String.fromCodePoint(Number(e.slice(1))) : ({ amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" } as Record<string, string>)[e],
  );
}

function parseXml(xml: string): XmlElement {
  let i = 0;
  const fail = (why: string): never => assert.fail(`XML not well-formed at ${i}: ${why}\n${xml.slice(Math.max(0, i - 60), i + 60)}`);
  const checkText = (t: string) => {
    if (/&(?!(#\d+|amp|lt|gt|quot|apos);)/.test(t)) fail('bare &');
    if (t.includes('<')) fail('raw <');
  };
  if (xml.startsWith('<?xml')) i = xml.indexOf('?>') + 2;
  const stack: XmlElement[] = [];
  let root: XmlElement | undefined;
  while (i < xml.length) {
    const lt = xml.indexOf('<', i);
    const text = lt < 0 ? xml.slice(i) : xml.slice(i, lt);
    checkText(text);
    if (stack.length > 0) stack[stack.length - 1].text += decode(text);
    else if (text.trim() !== '') fail('text outside the root');
    if (lt < 0) break;
    i = lt;
    const close = /^<\/([A-Za-z][\w-]*)\s*>/.exec(xml.slice(i));
    if (close) {
      const open = stack.pop() ?? fail(`unexpected </${close[1]}>`);
      if (open.name !== close[1]) fail(`</${close[1]}> closes <${open.name}>`);
      i += close[0].length;
      continue;
    }
    const tag = /^<([A-Za-z][\w-]*)((?:\s+[A-Za-z][\w:-]*="[^"]*")*)\s*(\/?)>/.exec(xml.slice(i));
    if (!tag) fail('bad tag');
    const [whole, name, attrText, selfClosing] = tag!;
    const attrs: Record<string, string> = {};
    for (const m of attrText.matchAll(/([A-Za-z][\w:-]*)="([^"]*)"/g)) {
      checkText(m[2]);
      if (m[1] in attrs) fail(`duplicate attribute ${m[1]}`);
      attrs[m[1]] = decode(m[2]);
    }
    const el: XmlElement = { name, attrs, children: [], text: '' };
    if (stack.length > 0) stack[stack.length - 1].children.push(el);
    else if (root) fail('second root');
    else root = el;
    if (!selfClosing) stack.push(el);
    i += whole.length;
  }
  if (stack.length > 0) fail(`unclosed <${stack[stack.length - 1].name}>`);
  return root ?? fail('no root');
}

describe('reporter registry', () => {
  test('names and lookup; unknown names are INVALID_FLAGS', () => {
    assert.deepEqual(reporterNames().slice(0, 3), ['table', 'json', 'junit']);
    assert.throws(() => getReporter('nope'), (e: unknown) => e instanceof TopasError && e.code === 'INVALID_FLAGS' && /table, json, junit/.test(e.hint ?? ''));
    registerReporter('count', (r) => String(r.results.length));
    assert.equal(getReporter('count')(report, plain), '3');
  });
});

describe('table reporter', () => {
  test('rows per scenario and step, summary, failures with Lua location and traceback, masked', () => {
    const out = getReporter('table')(report, plain);
    assert.doesNotMatch(out, /\x1b\[/, 'no colors when color is false');
    assert.doesNotMatch(out, /s3cret/);
    const lines = out.split('\n');
    const row = (text: string) => lines.find((l) => l.includes(text)) ?? assert.fail(`no row with ${text}:\n${out}`);
    assert.match(row('smoke'), /✓.*smoke.*1\.23s.*3 passed/);
    assert.match(row('health'), /✓\s+│\s+health\s+│ 12ms/);
    assert.match(row('checkout (failed)'), /✗/);
    assert.match(row('pay <card>'), /✗.*45ms.*0 passed, 1 failed/);
    assert.match(row('receipt'), /-.*receipt/);
    assert.match(row('no-steps (timed out)'), /✗/);
    assert.ok(lines.indexOf(row('health')) === lines.indexOf(row('smoke')) + 1, 'steps sit right beneath their scenario');
    assert.match(out, /^1 passed, 2 failed \(1 timed out\) in 4\.20s$/m);
    const failures = out.slice(out.indexOf('Failures:'));
    assert.match(failures, /✗ checkout › pay <card> & "confirm"\n {2}tests\/checkout\.lua\n {2}tests\/checkout\.lua:42: expected status 200, got 500 from postgres:\/\/admin:\*\*\*@db\/x\n {2}stack traceback:/);
    assert.match(failures, /✗ no-steps\n.*\n {2}tests\/no-steps\.lua:7: scenario timed out after 5s/);
    assert.equal(failures.match(/expected status 200/g)?.length, 1, 'the scenario error repeating the step error is shown once');
  });

  test('color adds ANSI codes; a run-level error is shown; an empty run says so', () => {
    const out = getReporter('table')(
      { ...report, results: [], state: 'error', error: { name: 'TopasError', code: 'SUT_START_FAILED', message: 'api exited with code 1', hint: 'see the logs' } },
      { color: true, mask },
    );
    assert.match(out, /\x1b\[/);
    assert.match(out, /no scenarios ran/);
    assert.match(out, /api exited with code 1\n.*hint: see the logs/);
  });
});

describe('table reporter playbooks', () => {
  test('Ok/Total per role and the first failure', () => {
    const out = getReporter('table')(
      {
        ...report,
        playbooks: [
          {
            name: 'upgrade',
            file: 'upgrade.yaml',
            state: 'failed',
            roles: [
              { name: 'client', ok: 3, total: 4 },
              { name: 'upgrader', ok: 1, total: 1 },
            ],
            firstFailure: { instance: 'client#2', error: { name: 'LuaError', message: 'barrier timed out', location: 'client.lua:9' } },
          },
        ],
      },
      plain,
    );
    assert.match(out, /✗ playbook upgrade failed: client 3\/4, upgrader 1\/1\n {2}first failure: client#2: client\.lua:9: barrier timed out/);
  });
});

describe('json reporter', () => {
  test('the report as JSON with sorted keys, masked, same bytes for equal reports', () => {
    const out = getReporter('json')(report, plain);
    const parsed = JSON.parse(out) as RunReport;
    assert.equal(parsed.results[1].steps[1].error?.message, 'expected status 200, got 500 from postgres://admin:***@db/x');
    assert.deepEqual(Object.keys(parsed), ['app', 'backend', 'durationMs', 'results', 'runId', 'startedAt', 'state']);
    const reordered: RunReport = { state: report.state, results: report.results, durationMs: report.durationMs, startedAt: report.startedAt, runId: report.runId, backend: 'local', app: 'shop' };
    assert.equal(getReporter('json')(reordered, plain), out);
    assert.deepEqual({ ...parsed, results: [] }, { ...report, results: [] });
  });

  test('masks a secret that JSON would escape', () => {
    const r: RunReport = { ...report, results: [], error: { name: 'E', message: 'pw is a"b\\c' } };
    const out = getReporter('json')(r, { color: false, mask: (s) => s.split('a"b\\c').join('***') });
    assert.equal((JSON.parse(out) as RunReport).error?.message, 'pw is ***');
  });
});

describe('junit reporter', () => {
  test('well-formed XML: a testsuite per scenario, a testcase per step, failures with Lua location and traceback', () => {
    const xml = getReporter('junit')(report, plain);
    assert.ok(xml.startsWith('<?xml version="1.0" encoding="UTF-8"?>\n'));
    const root = parseXml(xml);
    assert.equal(root.name, 'testsuites');
    assert.deepEqual(
      { tests: root.attrs.tests, failures: root.attrs.failures, skipped: root.attrs.skipped, time: root.attrs.time },
      { tests: '5', failures: '2', skipped: '1', time: '4.200' },
    );
    assert.deepEqual(
      root.children.map((s) => [s.name, s.attrs.name, s.attrs.tests, s.attrs.failures]),
      [
        ['testsuite', 'smoke', '1', '0'],
        ['testsuite', 'checkout', '3', '1'],
        ['testsuite', 'no-steps', '1', '1'],
      ],
    );
    const checkout = root.children[1];
    assert.deepEqual(
      checkout.children.map((c) => c.attrs.name),
      ['add to cart', 'pay <card> & "confirm"', 'receipt'],
    );
    assert.equal(checkout.children[0].attrs.time, '0.030');
    assert.equal(checkout.children[2].children[0].name, 'skipped');
    const failure = checkout.children[1].children[0];
    assert.equal(failure.name, 'failure');
    assert.equal(failure.attrs.message, 'tests/checkout.lua:42: expected status 200, got 500 from postgres://admin:***@db/x');
    assert.match(failure.text, /^tests\/checkout\.lua:42: expected status 200/);
    assert.match(failure.text, /stack traceback:\n\t\[C\]: in function 'error'\n\ttests\/checkout\.lua:42: in function <tests\/checkout\.lua:40>/);
    assert.doesNotMatch(xml, /s3cret/);

    const noSteps = root.children[2].children;
    assert.equal(noSteps.length, 1);
    assert.equal(noSteps[0].attrs.name, 'no-steps', 'a scenario without steps is one testcase named after it');
    assert.equal(noSteps[0].children[0].attrs.type, 'TIMEOUT');
    assert.match(noSteps[0].children[0].attrs.message, /^tests\/no-steps\.lua:7: scenario timed out/);
  });

  test('escapes control characters and quotes; a failure outside steps gets its own testcase', () => {
    const r: RunReport = {
      ...report,
      results: [
        scenario({
          name: "it's",
          state: 'error',
          steps: [{ name: 'ok', state: 'passed', durationMs: 1, checks: [] }],
          error: { name: 'LuaError', message: 'bad \u0001 byte\nand "quotes" <here>', location: 'tests/s.lua:9' },
        }),
      ],
    };
    const xml = getReporter('junit')(r, plain);
    assert.doesNotMatch(xml, /\u0001/);
    const suite = parseXml(xml).children[0];
    assert.equal(suite.attrs.name, "it's");
    assert.deepEqual(
      suite.children.map((c) => c.attrs.name),
      ['ok', "it's"],
    );
    assert.equal(suite.children[1].children[0].attrs.message, 'tests/s.lua:9: bad \uFFFD byte\nand "quotes" <here>');
  });

  test('a run that failed before any scenario still reports a failure', () => {
    const xml = getReporter('junit')({ ...report, results: [], state: 'error', error: { name: 'TopasError', code: 'SUT_START_FAILED', message: 'api exited' } }, plain);
    const root = parseXml(xml);
    assert.equal(root.attrs.failures, '1');
    assert.equal(root.children[0].children[0].children[0].attrs.message, 'api exited');
  });
});
