import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { ChatTemplate } from '../../../activities/model/chat.js';
import { episodePrompt, goldSegments } from '../../../activities/env/gold.js';
import { toolSchemas } from '../../../activities/env/format.js';
import { environmentByName } from '../../../activities/env/registry.js';

const row = { promptId: 'calculator-train-000000', prompt: '123*45=', reference: '5535', metadata: { a: 123, b: 45, goldCalls: 1 } };

test('tagged gold episode segments: prompt 123*45=, policy <c>123*45</c> (no end token), observation <o>5535</o>, policy <a>5535</a> + end', () => {
  const env = environmentByName('calculator');
  assert.deepEqual(goldSegments(env, row), {
    prompt: '123*45=',
    segments: [
      { role: 'policy', text: '<c>123*45</c>', endsTurn: false },
      { role: 'observation', text: '<o>5535</o>', endsTurn: false },
      { role: 'policy', text: '<a>5535</a>', endsTurn: true },
    ],
  });
});

test('tagged lookup gold: five segments alternating policy / observation, only the last ending the turn', () => {
  const env = environmentByName('lookup');
  const [item] = env.task!.prompts(0, 'train', 1);
  const { segments } = goldSegments(env, item!);
  assert.deepEqual(
    segments.map((s) => [s.role, s.endsTurn]),
    [
      ['policy', false],
      ['observation', false],
      ['policy', false],
      ['observation', false],
      ['policy', true],
    ],
  );
  assert.equal(segments[1]!.text, `<o>${item!.metadata.country as string}</o>`);
});

test("hermes gold episode through a chat template: prompt + call turn + <|im_end|> + glue = the template's render of the conversation so far", () => {
  const env = environmentByName('calculator', { format: 'hermes' });
  const template = new ChatTemplate(readFileSync('test/fixtures/env/hermes-tools.jinja', 'utf8'), {}, 'hermes-tools.jinja');
  const chat = { template };
  const hermesRow = { ...row, prompt: 'What is 123*45?' };
  const { prompt, segments } = goldSegments(env, hermesRow, { chat, endOfTurn: '<|im_end|>' });
  assert.deepEqual(
    segments.map((s) => [s.role, s.endsTurn]),
    [
      ['policy', true],
      ['observation', false],
      ['policy', true],
    ],
  );
  const gold = env.gold!(hermesRow);
  const rendered = template.render([...env.reset(hermesRow), gold[0]!, gold[1]!], {
    addGenerationPrompt: true,
    tools: toolSchemas(env.tools),
  });
  assert.equal(prompt + segments[0]!.text + '<|im_end|>' + segments[1]!.text, rendered);
  assert.equal(prompt, episodePrompt(env, hermesRow, chat));
  assert.ok(prompt.includes('"name": "calc"'), 'the prompt declares the tools');
});
