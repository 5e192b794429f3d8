import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { ChatTemplate } from '../../../activities/model/chat.js';
import { loadTokenizerDir } from '../../../activities/model/tokenizer-dir.js';
import { CharTokenizer, type TextTokenizer } from '../../../activities/model/tokenizer.js';
import { toolSchemas } from '../../../activities/env/format.js';
import { environmentByName } from '../../../activities/env/registry.js';
import { encodeGoldEpisode, type GoldEpisodeRun } from '../../../activities/run/gold-episode.js';
import { CHAT_TEMPLATE_DATE } from '../../../activities/run/resolve.js';

/** A run's prompt format as resolve.ts makes it: the char tokenizer's BOS, or the chat template; completions end with the end-of-turn id. */
function runOf(tokenizer: TextTokenizer, eos: number, template: ChatTemplate | null): GoldEpisodeRun {
  return {
    tokenizer,
    pretrained: template ? { files: {} as never, chatTemplate: template } : null,
    encodePrompt: (prompt) => tokenizer.encode(prompt),
    encodeCompletion: (text) => [...tokenizer.encode(text, { addSpecialTokens: false }), eos],
  };
}

test('calculator gold episode for a char model: BOS 123*45= | <c>123*45</c> | <o>5535</o> | <a>5535</a> EOS, 25 trained tokens, observation and prompt masked', () => {
  const env = environmentByName('calculator');
  const tok = CharTokenizer.fromAlphabet(env.task!.alphabet);
  const row = { promptId: 'x', prompt: '123*45=', reference: '5535', metadata: { a: 123, b: 45, goldCalls: 1 } };
  const r = encodeGoldEpisode(runOf(tok, tok.eosId, null), env, row);
  assert.equal(tok.decode(r.ids), '<bos>123*45=<c>123*45</c><o>5535</o><a>5535</a><eos>');
  assert.deepEqual(r.segmentEnds, [8, 21, 32, 44]);
  const masked = (from: number, to: number) => r.lossMask.slice(from, to);
  assert.deepEqual(masked(0, 8), new Array(8).fill(0));
  assert.deepEqual(masked(8, 21), new Array(13).fill(1));
  assert.deepEqual(masked(21, 32), new Array(11).fill(0));
  assert.deepEqual(masked(32, 44), new Array(12).fill(1));
  assert.equal(
    r.lossMask.reduce((a, b) => a + b, 0),
    25,
  );
});

test('hermes gold episode on the Qwen3 fixture tokenizer: segments tokenised apart, the call turn ends with <|im_end|> (trained), the glue masked, and the whole decodes to the template render', async () => {
  const { tokenizer } = await loadTokenizerDir('test/fixtures/hf/qwen3');
  const template = new ChatTemplate(readFileSync('test/fixtures/env/hermes-tools.jinja', 'utf8'), {}, 'hermes-tools.jinja');
  const imEnd = tokenizer.tokenToId('<|im_end|>')!;
  const env = environmentByName('calculator', { format: 'hermes' });
  const [row] = env.task!.prompts(0, 'train', 40).filter((r) => r.metadata.goldCalls === 1);
  const r = encodeGoldEpisode(runOf(tokenizer, imEnd, template), env, row!);
  const [promptEnd, turnEnd, glueEnd, end] = r.segmentEnds;
  assert.equal(r.ids[turnEnd! - 1], imEnd, 'the call turn ends with the end-of-turn id');
  assert.equal(r.ids[end! - 1], imEnd, 'the final turn ends with the end-of-turn id');
  assert.ok(r.lossMask.slice(promptEnd, turnEnd).every((m) => m === 1));
  assert.ok(r.lossMask.slice(turnEnd, glueEnd).every((m) => m === 0));
  assert.ok(r.lossMask.slice(glueEnd, end).every((m) => m === 1));
  const gold = env.gold!(row!);
  const whole = template.render([...env.reset(row!), ...gold], {
    addGenerationPrompt: false,
    tools: toolSchemas(env.tools),
    now: CHAT_TEMPLATE_DATE,
  });
  // the template closes the last turn with <|im_end|>\n; the policy stops at <|im_end|>
  assert.equal(tokenizer.decode(r.ids) + '\n', whole);
  assert.equal(
    tokenizer.decode(r.ids.slice(turnEnd, glueEnd)),
    '\n<|im_start|>user\n<tool_response>\n' + String(row!.reference) + '\n</tool_response><|im_end|>\n<|im_start|>assistant\n',
  );
});
