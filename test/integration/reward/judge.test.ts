/**
 * The LLM judge against a real HTTP peer: a node:http server on loopback that speaks the
 * OpenAI chat-completions protocol and plays a judge whose behaviour is chosen by a marker in the
 * response being judged (a good verdict, a fenced one, a malformed one, 500s, 429s, a slow reply).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultRegistry } from '../../../activities/reward/registry.js';
import { scoreSamples } from '../../../activities/reward/run.js';
import { parseScoreVerdict, parseRubricVerdict, MalformedVerdict } from '../../../activities/reward/judge.js';
import type { RewardFn, RewardResult, RewardSample } from '../../../activities/reward/types.js';
import { logger } from '../../../activities/common/log.js';

interface Seen {
  body: { model: string; messages: { role: string; content: string }[]; temperature: number; max_tokens: number };
  auth: string | undefined;
}
const seen: Seen[] = [];
const perMarker = new Map<string, number>();
let inFlight = 0;
let peakInFlight = 0;
let server: Server;
let baseUrl = '';

function verdictFor(
  marker: string,
  n: number,
  user: string,
): { status: number; content?: string; headers?: Record<string, string>; delayMs?: number } {
  switch (marker) {
    case 'GOOD':
      return { status: 200, content: '{"score": 9}' };
    case 'FENCED':
      return { status: 200, content: '```json\n{"score": 7}\n```' };
    case 'THINK':
      return { status: 200, content: '<think>weighing it</think>\n{"score": 4, "reason": "meh"}' };
    case 'LINE':
      return { status: 200, content: 'The response is concise.\nScore: 8/10' };
    case 'TWOLINES':
      return { status: 200, content: 'Score: 8/10\nScore: 2/10' };
    case 'MALFORMED':
      return { status: 200, content: 'I think it is quite good!' };
    case 'RANGE':
      return { status: 200, content: '{"score": 11}' };
    case 'FLAKYVERDICT':
      return n === 1 ? { status: 200, content: 'score nine' } : { status: 200, content: '{"score": 6}' };
    case 'FAIL500':
      return n <= 2 ? { status: 500, content: 'overloaded' } : { status: 200, content: '{"score": 5}' };
    case 'RATE':
      return n === 1 ? { status: 429, content: 'slow down', headers: { 'retry-after': '0' } } : { status: 200, content: '{"score": 3}' };
    case 'SLOW':
      return { status: 200, content: '{"score": 1}', delayMs: 3_000 };
    case 'AUTH':
      return { status: 401, content: 'bad key' };
    case 'BUSY':
      return { status: 200, content: '{"score": 10}', delayMs: 80 };
    case 'RUBRIC': {
      const items = (user.split('[RUBRIC]')[1] ?? '').trim().split('\n').length;
      return { status: 200, content: JSON.stringify({ scores: [1, 0, 0.5, 1].slice(0, items) }) };
    }
    case 'RUBRICSHORT':
      return { status: 200, content: '{"scores": [1]}' };
    default:
      return { status: 200, content: '{"score": 0}' };
  }
}

before(async () => {
  server = createServer((req, res) => {
    let data = '';
    req.on('data', (c) => (data += c));
    req.on('end', async () => {
      if (req.url !== '/v1/chat/completions' || req.method !== 'POST') {
        res.writeHead(404).end('not found');
        return;
      }
      const body = JSON.parse(data) as Seen['body'];
      seen.push({ body, auth: req.headers.authorization });
      const user = body.messages.find((m) => m.role === 'user')!.content;
      const marker = /\[RESPONSE\]\n(\w+)/.exec(user)?.[1] ?? '';
      const n = (perMarker.get(marker) ?? 0) + 1;
      perMarker.set(marker, n);
      const v = verdictFor(marker, n, user);
      // Requests in flight are counted for the concurrency test's marker only (a timed-out SLOW
      // request stays in this handler after its client gave up).
      const counted = marker === 'BUSY';
      if (counted) inFlight++;
      peakInFlight = Math.max(peakInFlight, inFlight);
      if (v.delayMs) await new Promise((r) => setTimeout(r, v.delayMs));
      if (counted) inFlight--;
      if (res.destroyed) return;
      if (v.status !== 200) {
        res.writeHead(v.status, { 'content-type': 'text/plain', ...v.headers }).end(v.content);
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(
        JSON.stringify({
          id: 'x',
          object: 'chat.completion',
          model: body.model,
          choices: [{ index: 0, message: { role: 'assistant', content: v.content }, finish_reason: 'stop' }],
        }),
      );
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  baseUrl = `http://127.0.0.1:${(server.address() as { port: number }).port}/v1`;
});
after(() => {
  server.closeAllConnections();
  return new Promise<void>((r) => server.close(() => r()));
});

const ctx = () => ({ step: 0, signal: new AbortController().signal, log: logger('test') });
const judge = (options: Record<string, unknown> = {}): RewardFn =>
  defaultRegistry().create({
    name: 'llm_judge',
    options: { baseUrl, model: 'judge-1', principle: 'Be concise.', baseDelayMs: 1, ...options },
  });
const sample = (completion: string, extra: Partial<RewardSample> = {}): RewardSample => ({
  promptId: `p-${completion}`,
  sampleId: 0,
  prompt: 'Say hi.',
  completion,
  ...extra,
});
const score = (fn: RewardFn, s: RewardSample): Promise<RewardResult> => Promise.resolve(fn.score!(s, ctx()));
const requestsFor = (marker: string) => perMarker.get(marker) ?? 0;

test('principle mode: the request carries model, principle, reference and key; the score maps to 0..1', async () => {
  process.env.DURABLE_RL_TEST_JUDGE_KEY = 'sekret';
  const r = await score(judge({ apiKeyEnv: 'DURABLE_RL_TEST_JUDGE_KEY' }), sample('GOOD', { reference: 'hi' }));
  assert.deepEqual(r, { reward: 0.9, components: { judge_score: 9 } });
  const last = seen[seen.length - 1]!;
  assert.equal(last.body.model, 'judge-1');
  assert.equal(last.body.temperature, 0);
  assert.equal(last.auth, 'Bearer sekret');
  assert.match(last.body.messages[0]!.content, /principle:\nBe concise\./);
  assert.match(last.body.messages[1]!.content, /\[PROMPT\]\nSay hi\.\n\n\[REFERENCE ANSWER\]\nhi\n\n\[RESPONSE\]\nGOOD/);
});

test('an empty or unicode completion is judged like any other', async () => {
  assert.deepEqual(await score(judge(), sample('', { promptId: 'empty' })), { reward: 0, components: { judge_score: 0 } });
  await score(judge(), sample('GOOD — Zürich 😀 東京', { promptId: 'uni' }));
  assert.match(seen[seen.length - 1]!.body.messages[1]!.content, /Zürich 😀 東京$/);
});

test('per-prompt principle from metadata overrides the option', async () => {
  await score(judge(), sample('GOOD', { promptId: 'meta', metadata: { principle: 'Use British spelling.' } }));
  assert.match(seen[seen.length - 1]!.body.messages[0]!.content, /British spelling/);
});

test('fenced JSON, a reasoning block and a Score line are accepted', async () => {
  assert.equal((await score(judge(), sample('FENCED'))).reward, 0.7);
  assert.equal((await score(judge(), sample('THINK'))).reward, 0.4);
  assert.equal((await score(judge({ verdictFormat: 'score_line' }), sample('LINE'))).reward, 0.8);
});

test('malformed and out-of-range verdicts are asked again, then fail the sample (never a zero)', async () => {
  await assert.rejects(
    () => score(judge({ malformedRetries: 2 }), sample('MALFORMED')),
    /no valid verdict in 3 tries: verdict is not a JSON object/,
  );
  assert.equal(requestsFor('MALFORMED'), 3);
  await assert.rejects(() => score(judge({ malformedRetries: 0 }), sample('RANGE')), /score 11 is outside \[0, 10\]/);
  await assert.rejects(
    () => score(judge({ verdictFormat: 'score_line', malformedRetries: 0 }), sample('TWOLINES')),
    /exactly one "Score: x\/10" line, found 2/,
  );
  const flaky = await score(judge(), sample('FLAKYVERDICT'));
  assert.equal(flaky.reward, 0.6);
  // Through scoreSamples the failure is data: recorded with its text, dropped, not zero.
  const { rows, counts } = await scoreSamples(judge({ malformedRetries: 0 }), [sample('GOOD'), sample('MALFORMED', { promptId: 'm2' })], {
    onError: 'drop',
  });
  assert.equal(rows[0]!.reward, 0.9);
  assert.equal(rows[1]!.reward, null);
  assert.match(rows[1]!.error!, /not a JSON object/);
  assert.equal(counts.errors, 1);
});

test('HTTP 5xx and 429 are retried with backoff; 401 is not retried; a slow server times out', async () => {
  assert.equal((await score(judge(), sample('FAIL500'))).reward, 0.5);
  assert.equal(requestsFor('FAIL500'), 3);
  assert.equal((await score(judge(), sample('RATE'))).reward, 0.3);
  assert.equal(requestsFor('RATE'), 2);
  await assert.rejects(() => score(judge(), sample('AUTH')), /judge request failed: HTTP 401 .*bad key/);
  assert.equal(requestsFor('AUTH'), 1);
  await assert.rejects(
    () => score(judge({ timeoutMs: 200, retries: 1 }), sample('SLOW')),
    /after 2 attempts: no reply from .* within 200 ms/,
  );
  await assert.rejects(
    () => score(judge({ baseUrl: 'http://127.0.0.1:1/v1', retries: 0 }), sample('GOOD')),
    /cannot reach http:\/\/127\.0\.0\.1:1\/v1\/chat\/completions/,
  );
  delete process.env.DURABLE_RL_TEST_JUDGE_KEY;
  await assert.rejects(
    () => score(judge({ apiKeyEnv: 'DURABLE_RL_TEST_JUDGE_KEY' }), sample('GOOD')),
    /DURABLE_RL_TEST_JUDGE_KEY \(apiKeyEnv\) is not set/,
  );
});

test('verdicts are cached by content hash, in memory and in a cache directory', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'judge-cache-'));
  try {
    const s = sample('GOOD', { promptId: 'cache-me', prompt: 'A prompt only this test uses.' });
    const before = requestsFor('GOOD');
    const a = judge({ cacheDir: dir });
    assert.equal((await score(a, s)).reward, 0.9);
    assert.equal((await score(a, s)).reward, 0.9);
    assert.equal(requestsFor('GOOD'), before + 1, 'the second call is a memory hit');
    const b = judge({ cacheDir: dir }); // a new process after a crash, same cache directory
    assert.equal((await score(b, s)).reward, 0.9);
    assert.equal(requestsFor('GOOD'), before + 1, 'the persistent cache answered');
    assert.equal(readdirSync(dir).length, 1);
    // A different model is a different request.
    await score(judge({ cacheDir: dir, model: 'judge-2' }), s);
    assert.equal(requestsFor('GOOD'), before + 2);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the judge caps requests in flight', async () => {
  peakInFlight = 0;
  const fn = judge({ concurrency: 2 });
  const samples = Array.from({ length: 8 }, (_, i) => sample('BUSY', { promptId: `busy-${i}` }));
  const { rows } = await scoreSamples(fn, samples, { concurrency: 8 });
  assert.ok(rows.every((r) => r.reward === 1));
  assert.equal(peakInFlight, 2);
});

test('rubric mode: weighted items, citation-aware instruction, wrong item count rejected', async () => {
  const fn = judge({
    mode: 'rubric',
    principle: undefined,
    citations: true,
    rubrics: ['names the capital', { text: 'gives the population', weight: 2 }, 'cites a source'],
  });
  const r = await score(fn, sample('RUBRIC'));
  // scores [1, 0, 0.5] with weights [1, 2, 1] -> (1 + 0 + 0.5) / 4.
  assert.deepEqual(r, { reward: 1.5 / 4, components: { rubric_satisfied: 1, rubric_items: 3 } });
  const last = seen[seen.length - 1]!;
  assert.match(last.body.messages[0]!.content, /citation/);
  assert.match(last.body.messages[1]!.content, /\[RUBRIC\]\n1\. names the capital\n2\. gives the population\n3\. cites a source/);
  const perPrompt = await score(fn, sample('RUBRIC', { promptId: 'r2', metadata: { rubrics: ['a', 'b'] } }));
  assert.equal(perPrompt.reward, 0.5);
  await assert.rejects(
    () => score(judge({ mode: 'rubric', rubrics: ['a', 'b'], malformedRetries: 0 }), sample('RUBRICSHORT')),
    /1 scores for 2 rubric items/,
  );
});

test('verdict parsers reject what is not a verdict', () => {
  assert.equal(parseScoreVerdict('{"score": 10}', 'json', 0, 10), 10);
  assert.equal(parseScoreVerdict('**Score:** 3/5', 'score_line', 1, 5), 3);
  for (const bad of ['', '{"score": "9"}', '[9]', '{"score": 9} trailing', 'null', '{"score": NaN}']) {
    assert.throws(() => parseScoreVerdict(bad, 'json', 0, 10), MalformedVerdict, bad);
  }
  assert.throws(() => parseScoreVerdict('Score: 9/100', 'score_line', 0, 10), /out of 100/);
  assert.throws(() => parseScoreVerdict('Score: -1/10', 'score_line', 0, 10), /outside/);
  assert.throws(() => parseRubricVerdict('{"scores": [1, 0.7]}', 2), /scores\[1\] is 0\.7/);
});

test('bad judge configuration names the field', () => {
  const reg = defaultRegistry();
  assert.throws(() => reg.create({ name: 'llm_judge', options: { model: 'm' } }), /baseUrl/);
  assert.throws(
    () => reg.create({ name: 'llm_judge', options: { baseUrl, model: 'm', mode: 'rubric', verdictFormat: 'score_line' } }),
    /verdictFormat: rubric mode needs/,
  );
  assert.throws(() => reg.create({ name: 'llm_judge', options: { baseUrl, model: 'm', minScore: 5, maxScore: 5 } }), /maxScore/);
});

test('a missing principle or rubric is an error of the sample', async () => {
  await assert.rejects(() => score(judge({ principle: undefined }), sample('GOOD')), /needs a principle for prompt p-GOOD/);
  await assert.rejects(() => score(judge({ mode: 'rubric' }), sample('GOOD')), /needs rubrics for prompt p-GOOD/);
});
