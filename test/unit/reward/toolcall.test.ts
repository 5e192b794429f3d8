import { test } from 'node:test';
import assert from 'node:assert/strict';
import { defaultRegistry } from '../../../activities/reward/registry.js';
import { compareToolCalls, maxAssignment, multisetJaccard, parseToolCalls } from '../../../activities/reward/toolcall.js';
import type { RewardSample, ToolCall } from '../../../activities/reward/types.js';
import { logger } from '../../../activities/common/log.js';

const ctx = { step: 0, signal: new AbortController().signal, log: logger('test') };
const fn = defaultRegistry().create({ name: 'tool_call' });
const score = (s: Partial<RewardSample>) => fn.score!({ promptId: 'p', sampleId: 0, prompt: '', completion: '', ...s }, ctx);
const close = (a: number, b: number) => assert.ok(Math.abs(a - b) < 1e-12, `${a} != ${b}`);

const weather: ToolCall = { name: 'get_weather', arguments: { city: 'Paris', unit: 'C' } };
const time: ToolCall = { name: 'get_time', arguments: { tz: 'CET' } };
const block = (calls: unknown[]) => `<tool_call>\n${calls.map((c) => JSON.stringify(c)).join('\n')}\n</tool_call>`;

test('parsing tool calls: JSON lines, arrays, OpenAI shape, string arguments; broken blocks flag the format', () => {
  assert.deepEqual(parseToolCalls(block([weather, time])).calls, [weather, time]);
  assert.deepEqual(parseToolCalls(`<tool_call>${JSON.stringify([weather])}</tool_call>`).calls, [weather]);
  const openai = { type: 'function', function: { name: 'get_time', arguments: '{"tz":"CET"}' } };
  assert.deepEqual(parseToolCalls(block([openai])).calls, [time]);
  assert.deepEqual(parseToolCalls(block([{ name: 'get_time', parameters: { tz: 'CET' } }])).calls, [time]);
  assert.equal(parseToolCalls('<tool_call>{"name": "x", "arguments": {</tool_call>').ok, false);
  assert.equal(parseToolCalls('<tool_call>{"arguments": {}}</tool_call>').ok, false);
  assert.equal(parseToolCalls('<tool_call>{"name": "x"}').ok, false); // never closed
});

test('ToolRL decomposition by hand', () => {
  // G = [weather(city, unit), time(tz)], P = [weather(city=Paris, unit=F)]
  const s = compareToolCalls([weather, time], [{ name: 'get_weather', arguments: { city: 'Paris', unit: 'F' } }]);
  close(s.name, 1 / 2); // names {weather, time} vs {weather}
  close(s.param, 1); // weather: keys identical; time: unmatched
  close(s.value, 1); // city matches, unit does not
  assert.equal(s.sMax, 1 + 2 + 3);
  close(s.fraction, (0.5 + 1 + 1) / 6);
  // Extra keys lower the parameter-name Jaccard: {city, unit} vs {city, unit, lang}.
  close(compareToolCalls([weather], [{ name: 'get_weather', arguments: { ...weather.arguments, lang: 'fr' } }]).param, 2 / 3);
  // A call to another tool earns nothing but its effect on the name score.
  const other = compareToolCalls([weather], [{ name: 'search', arguments: { city: 'Paris', unit: 'C' } }]);
  assert.deepEqual([other.name, other.param, other.value], [0, 0, 0]);
  // Identical lists (also both empty) are a full score.
  assert.equal(compareToolCalls([weather, time], [weather, time]).fraction, 1);
  assert.equal(compareToolCalls([], []).fraction, 1);
  assert.equal(compareToolCalls([], [time]).fraction, 0);
});

test('optimal matching pairs duplicate tools so that the total is largest', () => {
  const g1: ToolCall = { name: 'f', arguments: { x: 1, y: 2 } };
  const g2: ToolCall = { name: 'f', arguments: { x: 3 } };
  // Predicted in the other order; a greedy first-fit would pair g1 with p1 (x: 3) and lose value matches.
  const p1: ToolCall = { name: 'f', arguments: { x: 3 } };
  const p2: ToolCall = { name: 'f', arguments: { x: 1, y: 2 } };
  const s = compareToolCalls([g1, g2], [p1, p2]);
  close(s.param, 2);
  close(s.value, 3);
  assert.deepEqual(
    maxAssignment([
      [1, 5],
      [4, 1],
    ]).match,
    [1, 0],
  );
  assert.equal(
    maxAssignment([
      [1, 5, 0],
      [4, 6, 2],
    ]).total,
    9,
  );
  assert.deepEqual(maxAssignment([]).match, []);
  close(multisetJaccard(['a', 'a', 'b'], ['a', 'b', 'b']), 2 / 4);
});

test('tool_call reward: format + correct in [-3, 4]', async () => {
  const good = `<think>I need the weather.</think>\n${block([weather])}`;
  const r = await score({ completion: good, metadata: { toolCalls: [weather] } });
  assert.deepEqual(r, { reward: 4, components: { format: 1, tool_correct: 3, tool_name: 1, tool_param: 1, tool_value: 1 } });
  // No <think>: format 0, correctness unchanged.
  assert.equal((await score({ completion: block([weather]), metadata: { toolCalls: [weather] } })).reward, 3);
  // No call at all when one was expected: name 0 -> R_correct = -3 + 6 * 0 / 4.
  assert.equal((await score({ completion: '<think>hmm</think> It is sunny.', metadata: { toolCalls: [weather] } })).reward, 1 - 3);
  // Ground truth from the reference; rollout-recorded calls take precedence over the text.
  const fromRef = await score({ completion: '<think>t</think>', toolCalls: [weather], reference: JSON.stringify([weather]) });
  assert.equal(fromRef.reward, 4);
  const loose = defaultRegistry().create({ name: 'tool_call', options: { valueMatch: 'loose' } });
  const lr = await loose.score!(
    {
      promptId: 'p',
      sampleId: 0,
      prompt: '',
      completion: `<think>t</think>${block([{ name: 'get_weather', arguments: { city: ' paris ', unit: 'c' } }])}`,
      metadata: { toolCalls: [weather] },
    },
    ctx,
  );
  assert.equal(lr.reward, 4);
  await assert.rejects(async () => score({ completion: good }), /needs ground-truth calls.*metadata\.toolCalls/);
  await assert.rejects(
    async () => score({ completion: good, metadata: { toolCalls: [{ nom: 'x' }] } }),
    /metadata\.toolCalls\[0\].*not a \{ name, arguments \}/,
  );
  assert.throws(() => defaultRegistry().create({ name: 'tool_call', options: { correctMin: 1, correctMax: 1 } }), /correctMax/);
});

test('edge cases: empty completion, unicode arguments, huge numbers', async () => {
  // Empty completion: no <think> (format 0) and no calls (R_correct = -3 + 6 * 0 / S_max).
  assert.deepEqual(await score({ completion: '', metadata: { toolCalls: [weather] } }), {
    reward: -3,
    components: { format: 0, tool_correct: -3, tool_name: 0, tool_param: 0, tool_value: 0 },
  });
  // No call expected and none made: full marks.
  assert.equal((await score({ completion: '<think>just answer</think> Bonjour', metadata: { toolCalls: [] } })).reward, 4);
  const uni: ToolCall = { name: 'traduire', arguments: { texte: 'Zürich 😀 東京', n: 2 ** 80 } };
  const r = await score({ completion: `<think>t</think>${block([uni])}`, metadata: { toolCalls: [uni] } });
  assert.equal(r.reward, 4);
  const off = await score({
    completion: `<think>t</think>${block([{ ...uni, arguments: { ...uni.arguments, texte: 'Zurich 😀 東京' } }])}`,
    metadata: { toolCalls: [uni] },
  });
  close(off.components!.tool_value, 1 / 2);
});
