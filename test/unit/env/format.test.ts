import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  formatAnswer,
  formatCall,
  parseTurn,
  renderObservation,
  renderPrompt,
  stopStrings,
  toolSchemas,
} from '../../../activities/env/format.js';
import type { Tool } from '../../../activities/env/types.js';

const calc: Tool = {
  spec: {
    name: 'calc',
    description: 'Evaluates a product or sum of whole numbers.',
    parameters: { type: 'object', properties: { expression: { type: 'string' } }, required: ['expression'], additionalProperties: false },
  },
  tag: 'c',
  run: () => '0',
};
const lookup: Tool = {
  spec: {
    name: 'lookup',
    description: 'A fact of an entity.',
    parameters: {
      type: 'object',
      properties: { entity: { type: 'string' }, relation: { type: 'string', enum: ['country', 'capital', 'currency'] } },
      required: ['entity', 'relation'],
    },
  },
  tag: 'l',
  run: () => '',
};
const power: Tool = {
  spec: {
    name: 'power',
    description: 'b^e',
    parameters: {
      type: 'object',
      properties: { base: { type: 'integer' }, exp: { type: 'integer', minimum: 0 } },
      required: ['base', 'exp'],
    },
  },
  run: () => '',
};
const tools = [calc, lookup, power];
const hermesCall = (json: string) => `<tool_call>\n${json}\n</tool_call>`;

test('hermes: a turn with no <tool_call> is final, its text kept', () => {
  assert.deepEqual(parseTurn('hermes', 'The answer is <answer>5535</answer>', tools), {
    kind: 'final',
    text: 'The answer is <answer>5535</answer>',
  });
});

test('hermes: one call parses to { name, arguments }; an OpenAI-style string of arguments is read as JSON', () => {
  const t = parseTurn('hermes', `<think>x</think>\n${hermesCall('{"name": "calc", "arguments": {"expression": "123*45"}}')}`, tools);
  assert.deepEqual(t.kind === 'calls' && t.calls, [{ name: 'calc', arguments: { expression: '123*45' } }]);
  const s = parseTurn('hermes', hermesCall('{"name": "calc", "arguments": "{\\"expression\\": \\"2+2\\"}"}'), tools);
  assert.deepEqual(s.kind === 'calls' && s.calls, [{ name: 'calc', arguments: { expression: '2+2' } }]);
});

test('hermes: two blocks (parallel calls) give two calls in order', () => {
  const t = parseTurn(
    'hermes',
    `${hermesCall('{"name": "calc", "arguments": {"expression": "1+2"}}')}\n${hermesCall('{"name": "power", "arguments": {"base": 2, "exp": 10}}')}`,
    tools,
  );
  assert.deepEqual(t.kind === 'calls' && t.calls.map((c) => c.name), ['calc', 'power']);
});

test('hermes: bad JSON is malformed, the error says which block is not JSON', () => {
  const t = parseTurn('hermes', hermesCall('{"name": "calc", "arguments": {"expression": "1+2"}'), tools);
  assert.equal(t.kind, 'malformed');
  assert.match(t.kind === 'malformed' ? t.error : '', /^<tool_call> 1 is not JSON \(/);
});

test('hermes: an unknown tool is malformed, the error names it and the tools there are', () => {
  const t = parseTurn('hermes', hermesCall('{"name": "search", "arguments": {"q": "x"}}'), tools);
  assert.deepEqual(t.kind === 'malformed' && t.error, '<tool_call> 1: unknown tool "search" (tools: calc, lookup, power)');
});

test('hermes: wrong argument types against the schema are malformed: "base" must be integer, got string', () => {
  const t = parseTurn('hermes', hermesCall('{"name": "power", "arguments": {"base": "2", "exp": 3}}'), tools);
  assert.deepEqual(t.kind === 'malformed' && t.error, '<tool_call> 1: power: argument "base" must be integer, got string');
});

test('hermes: a missing required argument, an extra one and a value below minimum are each named', () => {
  const missing = parseTurn('hermes', hermesCall('{"name": "power", "arguments": {"base": 2}}'), tools);
  assert.deepEqual(missing.kind === 'malformed' && missing.error, '<tool_call> 1: power: argument "exp" is missing');
  const extra = parseTurn('hermes', hermesCall('{"name": "calc", "arguments": {"expression": "1", "x": 1}}'), tools);
  assert.deepEqual(extra.kind === 'malformed' && extra.error, '<tool_call> 1: calc: argument "x" is not a parameter (expression)');
  const low = parseTurn('hermes', hermesCall('{"name": "power", "arguments": {"base": 2, "exp": -1}}'), tools);
  assert.deepEqual(low.kind === 'malformed' && low.error, '<tool_call> 1: power: argument "exp" fails minimum 0');
});

test('hermes: a call without a name, arguments that are not an object, an unclosed block and a stray </tool_call> are malformed', () => {
  const cases: [string, RegExp][] = [
    [hermesCall('{"arguments": {}}'), /no "name" string/],
    [hermesCall('{"name": "calc", "arguments": [1]}'), /"arguments" of calc must be a JSON object/],
    ['<tool_call>\n{"name": "calc"', /<tool_call> 1 is not closed/],
    ['done</tool_call>', /<\/tool_call> without <tool_call>/],
  ];
  for (const [text, error] of cases) {
    const t = parseTurn('hermes', text, tools);
    assert.equal(t.kind, 'malformed', text);
    assert.match(t.kind === 'malformed' ? t.error : '', error);
  }
});

test('tagged: <c>123*45</c> is a calc call; <l>krona|country</l> fills lookup parameters in declaration order', () => {
  const c = parseTurn('tagged', '<c>123*45</c>', tools);
  assert.deepEqual(c.kind === 'calls' && c.calls, [{ name: 'calc', arguments: { expression: '123*45' } }]);
  const l = parseTurn('tagged', '<l>krona|country</l>', tools);
  assert.deepEqual(l.kind === 'calls' && l.calls, [{ name: 'lookup', arguments: { entity: 'krona', relation: 'country' } }]);
});

test('tagged: integer parameters are read as numbers: <power>2|10</power> -> { base: 2, exp: 10 }', () => {
  const t = parseTurn('tagged', '<power>2|10</power>', tools);
  assert.deepEqual(t.kind === 'calls' && t.calls, [{ name: 'power', arguments: { base: 2, exp: 10 } }]);
});

test('tagged: a final answer <a>5535</a> is final', () => {
  assert.deepEqual(parseTurn('tagged', '<a>5535</a>', tools), { kind: 'final', text: '<a>5535</a>' });
});

test('tagged: malformed calls say what was wrong (unclosed, unknown tag, argument count, type, enum)', () => {
  const cases: [string, string][] = [
    ['<c>123*45', '<c> is not closed: end the call with </c>'],
    ['<x>1</x>', 'unknown tool <x> (tools: <c> calc, <l> lookup, <power> power)'],
    ['<l>krona</l>', '<l> lookup takes 2 arguments (entity|relation), got 1'],
    ['<power>two|3</power>', 'power: argument "base" must be integer, got string'],
    ['<l>krona|mayor</l>', 'lookup: argument "relation" fails enum'],
  ];
  for (const [text, error] of cases) assert.deepEqual(parseTurn('tagged', text, tools), { kind: 'malformed', error, text });
});

test('stop strings: tagged stops at each closing tool tag, hermes at the end-of-turn token only', () => {
  assert.deepEqual(stopStrings('tagged', tools), ['</c>', '</l>', '</power>']);
  assert.deepEqual(stopStrings('hermes', tools), []);
});

test('formatCall and formatAnswer write what parseTurn reads back, in both formats', () => {
  const call = { name: 'lookup', arguments: { entity: 'krona', relation: 'country' } };
  assert.equal(formatCall('tagged', call, tools), '<l>krona|country</l>');
  assert.equal(
    formatCall('hermes', call, tools),
    '<tool_call>\n{"name": "lookup", "arguments": {"entity": "krona", "relation": "country"}}\n</tool_call>',
  );
  for (const f of ['tagged', 'hermes'] as const) {
    const t = parseTurn(f, formatCall(f, call, tools), tools);
    assert.deepEqual(t.kind === 'calls' && t.calls, [call]);
  }
  assert.equal(formatAnswer('tagged', '42'), '<a>42</a>');
  assert.equal(formatAnswer('hermes', '42'), '<answer>42</answer>');
});

test('tagged observations render as <o>text</o>, one per observation, without a template', () => {
  const obs = [
    { role: 'tool', content: '5535' },
    { role: 'tool', content: '9' },
  ];
  assert.equal(renderObservation('tagged', { history: [], observations: obs }), '<o>5535</o><o>9</o>');
});

test('tagged prompts are the user messages text; tool schemas are { type: function, function: spec }', () => {
  assert.equal(renderPrompt([{ role: 'user', content: '123*45=' }]), '123*45=');
  assert.deepEqual(toolSchemas([calc]), [{ type: 'function', function: calc.spec }]);
});
