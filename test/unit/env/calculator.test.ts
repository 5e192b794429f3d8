import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CharTokenizer } from '../../../activities/model/tokenizer.js';
import { calcTool } from '../../../activities/env/calculator.js';
import { parseTurn, renderObservation } from '../../../activities/env/format.js';
import { environmentByName } from '../../../activities/env/registry.js';
import { runToolCall } from '../../../activities/env/step.js';
import type { ToolContext } from '../../../activities/env/types.js';

const ctx = (): ToolContext => ({ signal: new AbortController().signal, seed: 0, promptId: 'p', sampleId: 0, turn: 0 });

test('calc evaluates exactly without eval: 123*45 -> 5535, (2+3)*4 -> 20, 7/2 -> 7/2, 99999*99999 -> 9999800001', () => {
  const calc = calcTool(64);
  assert.equal(calc.run({ expression: '123*45' }, ctx()), '5535');
  assert.equal(calc.run({ expression: '(2+3)*4' }, ctx()), '20');
  assert.equal(calc.run({ expression: '7/2' }, ctx()), '7/2');
  assert.equal(calc.run({ expression: '99999*99999' }, ctx()), '9999800001');
});

test('calc answers bad expressions with an error text, never running them: process.exit(1), 1/0, a 65-character expression', () => {
  const calc = calcTool(64);
  assert.match(calc.run({ expression: 'process.exit(1)' }, ctx()) as string, /^error: /);
  assert.match(calc.run({ expression: '1/0' }, ctx()) as string, /^error: division by zero/);
  assert.match(
    calc.run({ expression: '1+'.repeat(32) + '1' }, ctx()) as string,
    /^error: text of 65 characters is longer than the 64 allowed/,
  );
});

test('calculator items: same seed, same items; train and eval never share a multi-digit problem (one-digit products are in both); tool items have 2-3 x 2 digits, easy ones 1 x 1', () => {
  const env = environmentByName('calculator', { evalFraction: 0.2 });
  const train = env.task!.prompts(7, 'train', 300);
  assert.deepEqual(env.task!.prompts(7, 'train', 300), train);
  assert.deepEqual(env.task!.prompts(7, 'train', 5, 10), train.slice(10, 15));
  const key = (r: (typeof train)[number]) => {
    const { a, b } = r.metadata as { a: number; b: number };
    return `${Math.min(a, b)}*${Math.max(a, b)}`;
  };
  const evalItems = env.task!.prompts(7, 'eval', 300);
  const evalKeys = new Set(evalItems.filter((r) => r.metadata.goldCalls === 1).map(key));
  assert.equal(train.filter((r) => r.metadata.goldCalls === 1 && evalKeys.has(key(r))).length, 0);
  assert.ok(
    evalItems.some((r) => r.metadata.goldCalls === 0),
    'one-digit products in eval too',
  );
  for (const r of train) {
    const { a, b, goldCalls } = r.metadata as { a: number; b: number; goldCalls: number };
    assert.equal(r.prompt, `${a}*${b}=`);
    assert.equal(r.reference, String(a * b));
    if (goldCalls === 0) assert.ok(a <= 9 && b <= 9, r.prompt);
    else assert.ok(a >= 10 && a <= 999 && b >= 10 && b <= 99, r.prompt);
  }
  const easy = train.filter((r) => r.metadata.goldCalls === 0).length / train.length;
  assert.ok(easy > 0.1 && easy < 0.3, `easy fraction ${easy}`);
});

test('calculator gold trajectory, tagged: <c>123*45</c>, observation 5535, <a>5535</a>; one-digit products answer at once', () => {
  const env = environmentByName('calculator');
  const row = { promptId: 'x', prompt: '123*45=', reference: '5535', metadata: { a: 123, b: 45, goldCalls: 1 } };
  assert.deepEqual(env.gold!(row), [
    { role: 'assistant', content: '<c>123*45</c>' },
    { role: 'tool', name: 'calc', content: '5535' },
    { role: 'assistant', content: '<a>5535</a>' },
  ]);
  assert.deepEqual(env.gold!({ ...row, prompt: '7*8=', reference: '56', metadata: { a: 7, b: 8, goldCalls: 0 } }), [
    { role: 'assistant', content: '<a>56</a>' },
  ]);
});

test('calculator gold trajectories replay: each gold call parses and its tool gives the gold observation (200 train items)', async () => {
  const env = environmentByName('calculator');
  for (const row of env.task!.prompts(3, 'train', 200)) {
    const gold = env.gold!(row);
    for (let i = 0; i < gold.length; i++) {
      if (gold[i]!.role !== 'assistant') continue;
      const turn = parseTurn(env.format, gold[i]!.content, env.tools);
      if (i === gold.length - 1) assert.equal(turn.kind, 'final');
      else {
        assert.equal(turn.kind, 'calls');
        if (turn.kind === 'calls') assert.equal(await runToolCall(env, turn.calls[0]!, ctx()), gold[i + 1]!.content);
      }
    }
  }
});

test('calculator: every prompt and gold episode fits maxPromptChars / maxEpisodeChars and encodes with the char alphabet', () => {
  const env = environmentByName('calculator');
  const tok = CharTokenizer.fromAlphabet(env.task!.alphabet);
  for (const row of env.task!.prompts(1, 'train', 200)) {
    assert.ok(row.prompt.length <= env.task!.maxPromptChars);
    const text = env.gold!(row)
      .map((m) => (m.role === 'tool' ? renderObservation('tagged', { history: [], observations: [m] }) : m.content))
      .join('');
    assert.ok(text.length <= env.task!.maxEpisodeChars, text);
    tok.encode(row.prompt + text);
  }
  assert.equal(env.task!.maxPromptChars, '999*99='.length);
  assert.equal(env.task!.maxEpisodeChars, '<c>999*99</c><o>99999</o><a>99999</a>'.length);
});

test('calculator options are validated, naming the field: minDigits 4 above maxDigitsB 2', () => {
  assert.throws(() => environmentByName('calculator', { minDigits: 4, maxDigitsA: 5 }), /minDigits/);
  assert.throws(() => environmentByName('calculator', { digits: 3 }), /digits/);
  assert.throws(() => environmentByName('abacus'), /unknown environment "abacus": one of calculator, lookup/);
});

test('calculator in the hermes format: the gold call is a <tool_call> JSON block and the answer <answer>', () => {
  const env = environmentByName('calculator', { format: 'hermes' });
  const [row] = env.task!.prompts(0, 'train', 50).filter((r) => r.metadata.goldCalls === 1);
  const gold = env.gold!(row!);
  const { a, b } = row!.metadata as { a: number; b: number };
  assert.equal(gold[0]!.content, `<tool_call>\n{"name": "calc", "arguments": {"expression": "${a}*${b}"}}\n</tool_call>`);
  assert.equal(gold[2]!.content, `<answer>${a * b}</answer>`);
  assert.equal(env.reset(row!)[0]!.role, 'system');
});
