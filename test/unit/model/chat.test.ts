import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ChatTemplate, ChatTemplateError, encodeChat, strftimeUtc, type ChatMessage } from '../../../activities/model/chat.js';
import { loadTokenizerDir, tokenizerFromFiles, type TokenizerFiles } from '../../../activities/model/tokenizer-dir.js';
import { CharTokenizer, TokenizerError } from '../../../activities/model/tokenizer.js';

/** Qwen2's ChatML template, shortened: a default system turn, tools as JSON, `<|im_start|>assistant\n` as the prompt. */
const CHATML = [
  "{%- if messages[0]['role'] != 'system' %}{{- '<|im_start|>system\\nYou are helpful.<|im_end|>\\n' }}{%- endif %}",
  '{%- if tools is not none %}{{- "<tools>" + (tools | tojson) + "</tools>\\n" }}{%- endif %}',
  '{%- for message in messages %}',
  "    {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}",
  '{%- endfor %}',
  "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}",
].join('\n');

const conversation: ChatMessage[] = [
  { role: 'user', content: 'hi' },
  { role: 'assistant', content: 'ok' },
];

/**
 * A char-level `tokenizer.json` (ids 0..2 pad/bos/eos, then the alphabet, BOS prepended when adding
 * special tokens) plus ChatML's two special tokens as added tokens after the alphabet.
 */
function chatTokenizerJson(): Record<string, unknown> {
  const base = CharTokenizer.fromAlphabet('abcdefghijklmnopqrstuvwxyzYH .\n').toTokenizerJson();
  const vocab = { ...(base.model as { vocab: Record<string, number> }).vocab };
  const n = Object.keys(vocab).length;
  const added = ['<|im_start|>', '<|im_end|>'].map((content, i) => {
    vocab[content] = n + i;
    return { id: n + i, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true };
  });
  return {
    ...base,
    added_tokens: [...(base.added_tokens as unknown[]), ...added],
    model: { ...(base.model as object), vocab },
  };
}

const tokenizerConfig = { bos_token: '<bos>', eos_token: '<|im_end|>', pad_token: '<pad>' };

function files(extra: Partial<TokenizerFiles> = {}, config: Record<string, unknown> = tokenizerConfig): TokenizerFiles {
  return { 'tokenizer.json': JSON.stringify(chatTokenizerJson()), 'tokenizer_config.json': JSON.stringify(config), ...extra };
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(path.join(tmpdir(), 'durable-rl-chat-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test('ChatML: a two-turn conversation renders the default system turn, both turns, and with addGenerationPrompt the assistant header', () => {
  const t = new ChatTemplate(CHATML);
  const turns = '<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nok<|im_end|>\n';
  assert.equal(t.render(conversation, { addGenerationPrompt: false }), turns);
  assert.equal(t.render(conversation, { addGenerationPrompt: true }), turns + '<|im_start|>assistant\n');
});

test("the template sees the tokenizer config's special-token strings (bos_token, eos_token) and extra variables override them", () => {
  const t = new ChatTemplate('{{ bos_token }}{% for m in messages %}{{ m.content }}{{ eos_token }}{% endfor %}|{{ date_string }}', {
    bos_token: '<s>',
    eos_token: '</s>',
  });
  assert.equal(
    t.render(conversation, { addGenerationPrompt: false, extra: { date_string: '26 Jul 2024' } }),
    '<s>hi</s>ok</s>|26 Jul 2024',
  );
  assert.equal(t.render(conversation, { addGenerationPrompt: false, extra: { eos_token: '<end>' } }), '<s>hi<end>ok<end>|');
});

test('tools are none without the option and rendered by tojson as Python json.dumps does (", " and ": " separators, non-ASCII kept)', () => {
  const t = new ChatTemplate(CHATML);
  const head = '<|im_start|>system\nYou are helpful.<|im_end|>\n';
  assert.ok(t.render(conversation, { addGenerationPrompt: false }).startsWith(head + '<|im_start|>user'));
  const tools = [{ type: 'function', function: { name: 'add', description: 'somme à deux', parameters: { required: ['a', 'b'] } } }];
  assert.ok(
    t
      .render(conversation, { addGenerationPrompt: false, tools })
      .startsWith(
        head +
          '<tools>[{"type": "function", "function": {"name": "add", "description": "somme à deux", "parameters": {"required": ["a", "b"]}}}]</tools>\n',
      ),
  );
});

test('extra may not replace the variables the renderer sets (messages, add_generation_prompt, tools): extra.messages is an error', () => {
  const t = new ChatTemplate(CHATML);
  assert.throws(
    () => t.render(conversation, { addGenerationPrompt: false, extra: { messages: [] } }),
    (e: unknown) => e instanceof ChatTemplateError && /^extra\.messages/.test(e.message),
  );
});

test('raise_exception in the template fails the render with its message and the template origin', () => {
  const t = new ChatTemplate(
    "{% for m in messages %}{% if m.role == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{{ m.content }}{% endfor %}",
    {},
    'gemma/tokenizer_config.json chat_template',
  );
  assert.equal(t.render(conversation, { addGenerationPrompt: false }), 'hiok');
  assert.throws(
    () => t.render([{ role: 'system', content: 'x' }], { addGenerationPrompt: false }),
    (e: unknown) =>
      e instanceof ChatTemplateError &&
      e.message === 'gemma/tokenizer_config.json chat_template: the chat template refused the conversation: System role not supported',
  );
});

test('strftime_now formats the given time in UTC: 2024-07-26T23:30Z with "%d %b %Y" is "26 Jul 2024", "%A %B %-d" is an error', () => {
  const now = new Date(Date.UTC(2024, 6, 26, 23, 30, 5));
  const t = new ChatTemplate('Today Date: {{ strftime_now("%d %b %Y") }}');
  assert.equal(t.render([], { addGenerationPrompt: false, now }), 'Today Date: 26 Jul 2024');
  assert.equal(strftimeUtc(now, '%A %a %B %m/%y %H:%M:%S %I%p %j %%'), 'Friday Fri July 07/24 23:30:05 11PM 208 %');
  assert.throws(
    () => new ChatTemplate('{{ strftime_now("%A %B %-d") }}').render([], { addGenerationPrompt: false, now }),
    (e: unknown) => e instanceof ChatTemplateError && /unsupported directive "%-"/.test(e.message),
  );
});

test('a message without content is refused naming its index: messages[1].content', () => {
  const t = new ChatTemplate(CHATML);
  const bad = [{ role: 'user', content: 'hi' }, { role: 'assistant' }] as unknown as ChatMessage[];
  assert.throws(
    () => t.render(bad, { addGenerationPrompt: true }),
    (e: unknown) =>
      e instanceof ChatTemplateError && e.message === 'messages[1].content must be a string, got nothing (the field is missing)',
  );
});

test('messages are validated by index and field: a non-object, an empty role, a content list', () => {
  const t = new ChatTemplate(CHATML);
  const cases: [unknown, RegExp][] = [
    ['hi', /^messages must be an array/],
    [[conversation[0], 'hello'], /^messages\[1\] must be an object/],
    [[{ role: '', content: 'x' }], /^messages\[0\]\.role must be a non-empty string/],
    [
      [conversation[0], conversation[1], { role: 'user', content: [{ type: 'text', text: 'x' }] }],
      /^messages\[2\]\.content must be a string, got an array/,
    ],
  ];
  for (const [messages, pattern] of cases) {
    assert.throws(
      () => t.render(messages as ChatMessage[], { addGenerationPrompt: true }),
      (e: unknown) => e instanceof ChatTemplateError && pattern.test(e.message),
    );
  }
});

test('a template with a syntax error is refused when loaded, naming its source and the Jinja error', () => {
  assert.throws(
    () => new ChatTemplate('{% for m in messages %}{{ m.content }}', {}, 'models/x/chat_template.jinja'),
    (e: unknown) =>
      e instanceof ChatTemplateError && /^models\/x\/chat_template\.jinja: the chat template does not parse: \S/.test(e.message),
  );
});

test('a template that fails while rendering names its source and the Jinja error', () => {
  const t = new ChatTemplate('{{ messages[0].content.nope() }}', {}, 'models/x/chat_template.jinja');
  assert.throws(
    () => t.render(conversation, { addGenerationPrompt: false }),
    (e: unknown) =>
      e instanceof ChatTemplateError && /^models\/x\/chat_template\.jinja: rendering the chat template failed: \S/.test(e.message),
  );
});

test('encodeChat encodes the rendered text without adding special tokens: no BOS, <|im_start|> and <|im_end|> as single ids', () => {
  const { tokenizer, chatTemplate } = tokenizerFromFiles(files({ 'chat_template.jinja': CHATML }));
  const text = chatTemplate!.render([conversation[0]!], { addGenerationPrompt: true });
  const ids = encodeChat(tokenizer, chatTemplate!, [conversation[0]!], { addGenerationPrompt: true });
  assert.deepEqual(ids, tokenizer.encode(text, { addSpecialTokens: false }));
  assert.notEqual(ids[0], tokenizer.bosId);
  assert.deepEqual(tokenizer.encode(text).slice(1), ids); // the default encode prepends BOS
  const [start, end] = [tokenizer.tokenToId('<|im_start|>')!, tokenizer.tokenToId('<|im_end|>')!];
  assert.equal(ids.filter((id) => id === start).length, 3); // system, user, assistant header
  assert.equal(ids.filter((id) => id === end).length, 2);
  assert.equal(tokenizer.decode(ids), text);
});

test('tokenizer files: the template in tokenizer_config.json chat_template loads, with the config special tokens', () => {
  const t = new ChatTemplate(CHATML);
  const dir = tokenizerFromFiles(files({}, { ...tokenizerConfig, chat_template: '{{ bos_token }}' + CHATML }), { source: 'm' });
  assert.equal(dir.chatTemplate!.origin, 'm/tokenizer_config.json chat_template');
  assert.equal(
    dir.chatTemplate!.render(conversation, { addGenerationPrompt: true }),
    '<bos>' + t.render(conversation, { addGenerationPrompt: true }),
  );
});

test('tokenizer files: chat_template.jinja loads, and wins over the config chat_template as in transformers', () => {
  const dir = tokenizerFromFiles(files({ 'chat_template.jinja': CHATML }, { ...tokenizerConfig, chat_template: 'OLD' }), { source: 'm/' });
  assert.equal(dir.chatTemplate!.origin, 'm/chat_template.jinja');
  assert.equal(dir.chatTemplate!.source, CHATML);
});

test('tokenizer files: the list form uses "default", another by chatTemplateName; no default or an unknown name lists the names', () => {
  const list = [
    { name: 'tool_use', template: 'T' },
    { name: 'default', template: 'D' },
  ];
  const render = (d: ReturnType<typeof tokenizerFromFiles>) => d.chatTemplate!.render([], { addGenerationPrompt: false });
  assert.equal(render(tokenizerFromFiles(files({}, { ...tokenizerConfig, chat_template: list }))), 'D');
  assert.equal(render(tokenizerFromFiles(files({}, { ...tokenizerConfig, chat_template: list }), { chatTemplateName: 'tool_use' })), 'T');
  assert.throws(
    () => tokenizerFromFiles(files({}, { ...tokenizerConfig, chat_template: [list[0]] })),
    (e: unknown) => e instanceof TokenizerError && /chat_template has no template named "default" \(it has "tool_use"\)/.test(e.message),
  );
});

test('tokenizer files: no template anywhere gives chatTemplate null (a base model)', () => {
  assert.equal(tokenizerFromFiles(files()).chatTemplate, null);
});

test('generation_config eos_token_id [4, 7] gives stop ids [4, 7], also among the tokenizer eosIds; without the file, the tokenizer eos', () => {
  const withGen = tokenizerFromFiles(files({ 'generation_config.json': JSON.stringify({ eos_token_id: [4, 7], bos_token_id: 1 }) }));
  const eos = withGen.tokenizer.tokenToId('<|im_end|>')!;
  assert.deepEqual(withGen.stopIds, [4, 7]);
  assert.deepEqual(
    [...withGen.tokenizer.eosIds].sort((a, b) => a - b),
    [4, 7, eos].sort((a, b) => a - b),
  );
  assert.deepEqual(tokenizerFromFiles(files({ 'generation_config.json': '{"eos_token_id": 5}' })).stopIds, [5]);
  assert.deepEqual(tokenizerFromFiles(files()).stopIds, [eos]);
  assert.deepEqual(tokenizerFromFiles(files(), { configEosIds: [6] }).stopIds, [6]);
});

test('generation_config with a non-integer eos id is refused naming the file and the list index: eos_token_id[1]', () => {
  assert.throws(
    () => tokenizerFromFiles(files({ 'generation_config.json': '{"eos_token_id": [4, "7"]}' }), { source: 'm' }),
    (e: unknown) => e instanceof TokenizerError && e.message.startsWith('m/generation_config.json: eos_token_id[1] must be a token id'),
  );
});

test('a generation_config eos id outside the tokenizer (id 500 of 36) is refused naming generation_config.json', () => {
  assert.throws(
    () => tokenizerFromFiles(files({ 'generation_config.json': '{"eos_token_id": [4, 500]}' }), { source: 'm' }),
    (e: unknown) =>
      e instanceof TokenizerError && e.message === "eos id 500 (m/generation_config.json) is not in the tokenizer's vocabulary (36 ids)",
  );
});

test('added_tokens_decoder: a token tokenizer.json lacks is added at its id; one whose id disagrees is refused naming both files', () => {
  const json = chatTokenizerJson();
  const n = Object.keys((json.model as { vocab: object }).vocab).length;
  const addedTokens = { [n]: { content: '<think>', special: false }, [n - 1]: { content: '<|im_end|>', special: true } };
  const dir = tokenizerFromFiles(files({}, { ...tokenizerConfig, added_tokens_decoder: addedTokens }));
  assert.equal(dir.tokenizer.tokenToId('<think>'), n);
  assert.deepEqual(dir.tokenizer.encode('<think>a', { addSpecialTokens: false }), [n, dir.tokenizer.tokenToId('a')]);
  assert.throws(
    () => tokenizerFromFiles(files({}, { ...tokenizerConfig, added_tokens_decoder: { 3: { content: '<|im_end|>' } } }), { source: 'm' }),
    (e: unknown) =>
      e instanceof TokenizerError &&
      e.message === `m/tokenizer_config.json: added_tokens_decoder gives "<|im_end|>" id 3, but m/tokenizer.json gives it id ${n - 1}`,
  );
});

test('loadTokenizerDir reads both layouts from a directory (template in the config; chat_template.jinja) and names a missing tokenizer.json', async () => {
  await withDir(async (dir) => {
    await assert.rejects(
      loadTokenizerDir(dir),
      (e: unknown) => e instanceof TokenizerError && e.message.includes(path.join(dir, 'tokenizer.json')),
    );
    await writeFile(path.join(dir, 'tokenizer.json'), JSON.stringify(chatTokenizerJson()));
    await writeFile(
      path.join(dir, 'tokenizer_config.json'),
      JSON.stringify({ ...tokenizerConfig, chat_template: 'config:{{ eos_token }}' }),
    );
    const fromConfig = await loadTokenizerDir(dir);
    assert.equal(fromConfig.chatTemplate!.render([], { addGenerationPrompt: false }), 'config:<|im_end|>');
    await writeFile(path.join(dir, 'chat_template.jinja'), 'jinja:{{ eos_token }}');
    const fromJinja = await loadTokenizerDir(dir);
    assert.equal(fromJinja.chatTemplate!.origin, path.join(dir, 'chat_template.jinja'));
    assert.equal(fromJinja.chatTemplate!.render([], { addGenerationPrompt: false }), 'jinja:<|im_end|>');
  });
});

// ---------------------------------------------------------------------------------------------
// Parity with transformers 5.23 on the committed fixtures (bench/hf-fixtures/make_fixtures.py)
// ---------------------------------------------------------------------------------------------

interface ChatExpected {
  chat: { messages: ChatMessage[]; prompt: string; prompt_ids: number[]; conversation: string; conversation_ids: number[] };
  eos_token_ids: number[];
  tokens: { text: string; ids: number[] };
}

const FIXTURES = path.join(path.dirname(fileURLToPath(import.meta.url)), '../../fixtures/hf');
/** Every fixture with an expected.json; a missing fixtures folder fails this file rather than skipping it. */
const fixtures = readdirSync(FIXTURES).filter((name) => existsSync(path.join(FIXTURES, name, 'expected.json')));

const expectedOf = (name: string) => JSON.parse(readFileSync(path.join(FIXTURES, name, 'expected.json'), 'utf8')) as ChatExpected;
const layoutOf = (name: string) =>
  existsSync(path.join(FIXTURES, name, 'chat_template.jinja')) ? 'chat_template.jinja' : 'tokenizer_config.json';

test('test/fixtures/hf holds fixtures with expected.json in both tokenizer layouts (chat_template.jinja and tokenizer_config.json)', () => {
  assert.ok(fixtures.length >= 2, `fixtures found: ${fixtures.join(', ')}`);
  assert.deepEqual(new Set(fixtures.map(layoutOf)), new Set(['chat_template.jinja', 'tokenizer_config.json']));
});

for (const name of fixtures) {
  const expected = expectedOf(name);
  const { chat } = expected;
  const layout = layoutOf(name);
  const origin = layout === 'chat_template.jinja' ? 'chat_template.jinja' : 'tokenizer_config.json chat_template';

  test(`${name} (template from ${layout}): prompt of ${chat.prompt_ids.length} ids and conversation of ${chat.conversation_ids.length} ids equal transformers' text and ids`, async () => {
    const { tokenizer, chatTemplate } = await loadTokenizerDir(path.join(FIXTURES, name));
    assert.equal(chatTemplate!.origin, path.join(FIXTURES, name, origin));
    assert.equal(chatTemplate!.render(chat.messages.slice(0, 2), { addGenerationPrompt: true }), chat.prompt);
    assert.deepEqual(encodeChat(tokenizer, chatTemplate!, chat.messages.slice(0, 2), { addGenerationPrompt: true }), chat.prompt_ids);
    assert.equal(chatTemplate!.render(chat.messages, { addGenerationPrompt: false }), chat.conversation);
    assert.deepEqual(encodeChat(tokenizer, chatTemplate!, chat.messages, { addGenerationPrompt: false }), chat.conversation_ids);
  });

  test(`${name}: stop ids are generation_config's [${expected.eos_token_ids}]; "${expected.tokens.text.replace(/\n/g, '\\n')}" encodes to transformers' ${expected.tokens.ids.length} ids`, async () => {
    const { tokenizer, stopIds } = await loadTokenizerDir(path.join(FIXTURES, name));
    assert.deepEqual(stopIds, expected.eos_token_ids);
    assert.deepEqual(tokenizer.encode(expected.tokens.text, { addSpecialTokens: false }), expected.tokens.ids);
    assert.equal(tokenizer.decode(expected.tokens.ids), expected.tokens.text);
  });
}
