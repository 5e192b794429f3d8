import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { ChatTemplate, type ChatMessage } from '../../../activities/model/chat.js';
import { renderObservation, renderPrompt } from '../../../activities/env/format.js';
import type { Tool, ToolSpec } from '../../../activities/env/types.js';

/** Conversations rendered by Python's Jinja2 as transformers compiles chat templates (test/fixtures/env/render.py). */
interface Case {
  name: string;
  template: string;
  tools: { type: 'function'; function: ToolSpec }[] | null;
  history: ChatMessage[];
  observations: ChatMessage[];
  endOfTurn: string;
  full: string;
  prefix: string;
}
const fixture = JSON.parse(readFileSync('test/fixtures/env/expected.json', 'utf8')) as { cases: Case[] };

const chatOf = (c: Case) => ({
  template: new ChatTemplate(readFileSync(c.template, 'utf8'), { eos_token: '<|im_end|>' }, c.template),
  tools: (c.tools ?? []).map((t): Tool => ({ spec: t.function, run: () => '' })),
});

for (const c of fixture.cases) {
  test(`hermes observation segment is the suffix transformers' template renders (${c.name}): prefix + turn + end of turn + segment = the whole conversation`, () => {
    const chat = chatOf(c);
    const segment = renderObservation('hermes', { history: c.history, observations: c.observations, chat, endOfTurn: c.endOfTurn });
    const turn = c.history[c.history.length - 1]!.content;
    assert.equal(c.prefix + turn + c.endOfTurn + segment, c.full);
    // and the prompt the policy saw is the template's own rendering of the conversation before its turn
    assert.equal(renderPrompt(c.history.slice(0, -1), chat), c.prefix);
  });
}

test('hermes segment of the fixture template for one call: the tool response turn and the next assistant header, nothing else', () => {
  const c = fixture.cases[0]!;
  const segment = renderObservation('hermes', {
    history: c.history,
    observations: c.observations,
    chat: chatOf(c),
    endOfTurn: '<|im_end|>',
  });
  assert.equal(segment, '\n<|im_start|>user\n<tool_response>\n5535\n</tool_response><|im_end|>\n<|im_start|>assistant\n');
});

test("hermes segment when the policy stopped before its end-of-turn token: the segment starts with the template's <|im_end|>", () => {
  const c = fixture.cases[0]!;
  const segment = renderObservation('hermes', { history: c.history, observations: c.observations, chat: chatOf(c) });
  assert.ok(segment.startsWith('<|im_end|>\n<|im_start|>user\n'));
});

test('hermes: an end-of-turn the template does not write is refused, naming both', () => {
  const c = fixture.cases[0]!;
  assert.throws(
    () => renderObservation('hermes', { history: c.history, observations: c.observations, chat: chatOf(c), endOfTurn: '</s>' }),
    /ends an assistant turn with "<\|im_end\|>\\n<\|im_star", not the end-of-turn "<\/s>"/,
  );
});

test('hermes: a history that does not end with the assistant turn is refused', () => {
  const c = fixture.cases[0]!;
  assert.throws(
    () => renderObservation('hermes', { history: c.history.slice(0, -1), observations: c.observations, chat: chatOf(c) }),
    /must end with the policy's assistant turn, not a user message/,
  );
});
