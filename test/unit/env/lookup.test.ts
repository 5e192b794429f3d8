import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CharTokenizer } from '../../../activities/model/tokenizer.js';
import { parseTurn, renderObservation } from '../../../activities/env/format.js';
import { countryTable, lookupFact } from '../../../activities/env/lookup.js';
import { environmentByName } from '../../../activities/env/registry.js';
import { runToolCall } from '../../../activities/env/step.js';
import type { ToolContext } from '../../../activities/env/types.js';

const ctx = (): ToolContext => ({ signal: new AbortController().signal, seed: 0, promptId: 'p', sampleId: 0, turn: 0 });

test('the shipped table has 42 countries, each capital and each currency naming one country', () => {
  const rows = countryTable();
  assert.equal(rows.length, 42);
  assert.equal(new Set(rows.map((r) => r.capital)).size, 42);
  assert.equal(new Set(rows.map((r) => r.currency)).size, 42);
  assert.equal(new Set(rows.map((r) => r.country)).size, 42);
});

test('lookup: SEK|country -> Sweden, Sweden|capital -> Stockholm, oslo|country -> Norway (case ignored), errors as text', () => {
  const rows = countryTable();
  assert.equal(lookupFact(rows, 'SEK', 'country'), 'Sweden');
  assert.equal(lookupFact(rows, 'Sweden', 'capital'), 'Stockholm');
  assert.equal(lookupFact(rows, 'oslo', 'country'), 'Norway');
  assert.equal(lookupFact(rows, 'Norway', 'currency'), 'NOK');
  assert.equal(lookupFact(rows, 'Atlantis', 'capital'), 'error: "Atlantis" is not a country of the table');
  assert.equal(lookupFact(rows, 'EUR', 'country'), 'error: no country has the capital or currency "EUR"');
});

test('lookup gold trajectory of "capital of currency SEK?": two calls, two observations, the capital', () => {
  const env = environmentByName('lookup');
  const row = [...env.task!.prompts(0, 'train', 1000), ...env.task!.prompts(0, 'eval', 200)].find(
    (r) => r.prompt === 'capital of currency SEK?',
  );
  assert.ok(row, 'the question is drawn in one of the splits');
  assert.deepEqual(env.gold!(row), [
    { role: 'assistant', content: '<l>SEK|country</l>' },
    { role: 'tool', name: 'lookup', content: 'Sweden' },
    { role: 'assistant', content: '<l>Sweden|capital</l>' },
    { role: 'tool', name: 'lookup', content: 'Stockholm' },
    { role: 'assistant', content: '<a>Stockholm</a>' },
  ]);
});

test('lookup items: 84 two-hop questions, train and eval disjoint by (kind, entity) under every seed; one-hop practice in training only', () => {
  const env = environmentByName('lookup');
  const key = (r: { metadata: Record<string, unknown> }) => `${r.metadata.kind as string}:${r.metadata.entity as string}`;
  const trainItems = [0, 1, 2].flatMap((s) => env.task!.prompts(s, 'train', 400));
  const evalItems = [0, 1, 2].flatMap((s) => env.task!.prompts(s, 'eval', 400));
  const train = new Set(trainItems.filter((r) => r.metadata.goldCalls === 2).map(key));
  const evalQ = new Set(evalItems.map(key));
  assert.equal(train.size + evalQ.size, 84);
  assert.equal([...train].filter((k) => evalQ.has(k)).length, 0);
  assert.ok(evalQ.size >= 8 && evalQ.size <= 28, `eval questions ${evalQ.size}`);
  assert.ok(
    evalItems.every((r) => r.metadata.goldCalls === 2),
    'evaluations ask two-hop questions only',
  );
  const practice = trainItems.filter((r) => r.metadata.goldCalls === 1).length / trainItems.length;
  assert.ok(practice > 0.4 && practice < 0.6, `one-hop fraction ${practice}`);
});

test('one-hop practice questions: "country of currency SEK?" is one call, "capital of country Sweden?" one call', () => {
  const env = environmentByName('lookup');
  const items = env.task!.prompts(0, 'train', 2000);
  const byCurrency = items.find((r) => r.prompt === 'country of currency SEK?')!;
  assert.deepEqual(env.gold!(byCurrency), [
    { role: 'assistant', content: '<l>SEK|country</l>' },
    { role: 'tool', name: 'lookup', content: 'Sweden' },
    { role: 'assistant', content: '<a>Sweden</a>' },
  ]);
  const ofCountry = items.find((r) => r.prompt === 'capital of country Sweden?')!;
  assert.deepEqual(env.gold!(ofCountry), [
    { role: 'assistant', content: '<l>Sweden|capital</l>' },
    { role: 'tool', name: 'lookup', content: 'Stockholm' },
    { role: 'assistant', content: '<a>Stockholm</a>' },
  ]);
});

test('lookup gold trajectories replay through the tool, fit the char budget and encode with the alphabet', async () => {
  const env = environmentByName('lookup');
  const tok = CharTokenizer.fromAlphabet(env.task!.alphabet);
  for (const row of env.task!.prompts(5, 'train', 150)) {
    const gold = env.gold!(row);
    let text = '';
    for (let i = 0; i < gold.length; i++) {
      const m = gold[i]!;
      text += m.role === 'tool' ? renderObservation('tagged', { history: [], observations: [m] }) : m.content;
      if (m.role !== 'assistant') continue;
      const turn = parseTurn(env.format, m.content, env.tools);
      if (i === gold.length - 1) assert.equal(turn.kind, 'final');
      else if (turn.kind === 'calls') assert.equal(await runToolCall(env, turn.calls[0]!, ctx()), gold[i + 1]!.content);
      else assert.fail(`gold turn ${m.content} parsed as ${turn.kind}`);
    }
    assert.ok(row.prompt.length <= env.task!.maxPromptChars);
    assert.ok(text.length <= env.task!.maxEpisodeChars, text);
    tok.encode(row.prompt + text);
  }
});
