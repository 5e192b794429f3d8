import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError } from '../../../activities/common/config.js';
import {
  parseSamplingParams,
  sampleAt,
  sampleStream,
  sampleToken,
  SamplingError,
  StopChecker,
  type SamplingParamsInput,
} from '../../../activities/rollout/sampling.js';

const P = (o: SamplingParamsInput = {}) => parseSamplingParams(o);
const close = (a: number, b: number, tol = 1e-12) => assert.ok(Math.abs(a - b) <= tol, `${a} vs ${b}`);

/** The set of tokens reachable by sweeping u over [0, 1). */
function support(logits: number[], params: SamplingParamsInput): number[] {
  const seen = new Set<number>();
  const p = P(params);
  for (let i = 0; i < 2000; i++) seen.add(sampleToken(Float32Array.from(logits), p, i / 2000).token);
  return [...seen].sort((a, b) => a - b);
}

test('options: vLLM names with defaults; bad values and unknown keys are rejected naming the field', () => {
  const d = P();
  assert.deepEqual(d, {
    temperature: 1,
    top_k: -1,
    top_p: 1,
    min_p: 0,
    max_tokens: 256,
    stop: [],
    stop_token_ids: [],
    ignore_eos: false,
    include_stop_str_in_output: false,
  });
  assert.deepEqual(P({ stop: '###' }).stop, ['###']);
  const bad: [unknown, RegExp][] = [
    [{ temperature: -0.1 }, /temperature:/],
    [{ top_p: 0 }, /top_p:/],
    [{ top_p: 1.5 }, /top_p:/],
    [{ top_k: -2 }, /top_k:/],
    [{ top_k: 2.5 }, /top_k:/],
    [{ min_p: 1.1 }, /min_p:/],
    [{ max_tokens: 0 }, /max_tokens:/],
    [{ stop: ['ok', ''] }, /stop\.1: stop strings must not be empty/],
    [{ stop_token_ids: [-1] }, /stop_token_ids\.0:/],
    [{ topP: 0.9 }, /topP/],
    [{ temperature: '1' }, /temperature:/],
  ];
  for (const [input, re] of bad) {
    assert.throws(
      () => parseSamplingParams(input),
      (e: unknown) => e instanceof ConfigError && re.test(e.message),
      JSON.stringify(input),
    );
  }
});

test('determinism: a draw is a pure function of (seed, step, prompt, sample, position)', () => {
  const logits = Float32Array.from({ length: 50 }, (_, i) => Math.sin(i) * 2);
  const params = P({ temperature: 0.9, top_p: 0.95 });
  const key = { seed: 1234, step: 3, promptId: 'gsm8k-17', sampleId: 2 };
  const run = (k = key) => Array.from({ length: 64 }, (_, pos) => sampleAt(logits, params, sampleStream(k), pos).token);
  const a = run();
  assert.deepEqual(run(), a);
  // Fresh streams and out-of-order positions give the same tokens (random access, no hidden state).
  const s = sampleStream(key);
  for (const pos of [63, 0, 31, 7]) assert.equal(sampleAt(logits, params, s, pos).token, a[pos]);
  // Any coordinate changes the stream.
  for (const other of [
    { ...key, seed: 1235 },
    { ...key, step: 4 },
    { ...key, promptId: 'gsm8k-18' },
    { ...key, sampleId: 3 },
  ]) {
    assert.notDeepEqual(run(other), a);
  }
  // Pinned values: these must never change, or replaying an old run would draw different tokens.
  assert.deepEqual(a.slice(0, 12), GOLDEN);
});
const GOLDEN = [40, 27, 38, 8, 39, 13, 8, 15, 21, 39, 46, 20];

test('determinism: a sequence draws the same tokens whatever batch it shares', () => {
  const params = P({ temperature: 1, top_k: 20 });
  const logitsOf = (seq: number, pos: number) => Float32Array.from({ length: 40 }, (_, i) => Math.cos(i * (seq + 1) + pos));
  const decodeBatch = (seqs: number[]) => {
    const out = new Map<number, number[]>(seqs.map((s) => [s, []]));
    for (let pos = 0; pos < 16; pos++) {
      for (const seq of seqs)
        out.get(seq)!.push(sampleAt(logitsOf(seq, pos), params, sampleStream({ seed: 9, step: 0, promptId: 5, sampleId: seq }), pos).token);
    }
    return out;
  };
  const big = decodeBatch([0, 1, 2, 3, 4, 5]);
  const small = decodeBatch([4, 1]);
  assert.deepEqual(small.get(4), big.get(4));
  assert.deepEqual(small.get(1), big.get(1));
});

test('distribution: draw frequencies match softmax(logits / T) (chi-square, 4 dof)', () => {
  const logits = Float32Array.from([0, 1, 2, -1, 0.5]);
  const T = 0.7;
  const params = P({ temperature: T });
  const w = Array.from(logits, (l) => Math.exp(l / T));
  const Z = w.reduce((a, b) => a + b);
  const N = 20000;
  const counts = new Array(5).fill(0);
  const s = sampleStream({ seed: 42, step: 0, promptId: 0, sampleId: 0 });
  for (let pos = 0; pos < N; pos++) counts[sampleAt(logits, params, s, pos).token]++;
  const chi2 = counts.reduce((acc, c, i) => acc + (c - (N * w[i]!) / Z) ** 2 / ((N * w[i]!) / Z), 0);
  assert.ok(chi2 < 18.47, `chi-square ${chi2} exceeds the p=0.001 critical value 18.47 (counts ${counts})`);
  // With top-k 2 only the two best tokens appear, in their renormalised proportion.
  const top2 = P({ temperature: T, top_k: 2 });
  const c2 = new Array(5).fill(0);
  for (let pos = 0; pos < N; pos++) c2[sampleAt(logits, top2, s, pos).token]++;
  assert.deepEqual([c2[0], c2[3], c2[4]], [0, 0, 0]);
  const p2 = w[2]! / (w[1]! + w[2]!);
  const chi2b = (c2[2] - N * p2) ** 2 / (N * p2) + (c2[1] - N * (1 - p2)) ** 2 / (N * (1 - p2));
  assert.ok(chi2b < 10.83, `top-k chi-square ${chi2b} exceeds 10.83 (1 dof, p=0.001)`);
});

test('top-k, top-p and min-p exclude exactly what they should', () => {
  const probs = [0.5, 0.2, 0.15, 0.1, 0.05];
  const logits = probs.map(Math.log);
  assert.deepEqual(support(logits, {}), [0, 1, 2, 3, 4]);
  assert.deepEqual(support(logits, { top_k: 2 }), [0, 1]);
  assert.deepEqual(support(logits, { top_k: 0 }), [0, 1, 2, 3, 4]);
  assert.deepEqual(support(logits, { top_p: 0.4 }), [0]);
  assert.deepEqual(support(logits, { top_p: 0.6 }), [0, 1]);
  assert.deepEqual(support(logits, { top_p: 0.75 }), [0, 1, 2]);
  assert.deepEqual(support(logits, { min_p: 0.35 }), [0, 1]); // keeps p >= 0.175
  assert.deepEqual(support(logits, { min_p: 0.25 }), [0, 1, 2]); // keeps p >= 0.125
  // top-p applies to what top-k kept: 0.5/0.85 = 0.588 < 0.6, so token 1 is needed too.
  assert.deepEqual(support(logits, { top_k: 3, top_p: 0.6 }), [0, 1]);
  assert.deepEqual(support(logits, { top_k: 3, top_p: 0.55 }), [0]);
  // Masked (-Infinity) tokens are never drawn.
  assert.deepEqual(support([0, -Infinity, 0, -Infinity], {}), [0, 2]);
});

test('ties are broken by the lowest id: greedy, the top-k boundary, the top-p boundary', () => {
  const l = Float32Array.from([1, 3, 3, 2]);
  assert.equal(sampleToken(l, P({ temperature: 0 }), 0.99).token, 1);
  assert.deepEqual(support([1, 3, 3, 2], { top_k: 1 }), [1]);
  assert.deepEqual(support([3, 1, 3, 3], { top_k: 2 }), [0, 2]);
  assert.deepEqual(support([2, 2, 2, 2], { top_p: 0.3 }), [0, 1]);
});

test('logprobs: hand-checked behaviour, raw and truncated log-probabilities and entropy', () => {
  const logits = Float32Array.from([0, Math.log(2), Math.log(3)]); // probs 1/6, 2/6, 3/6 at T=1
  // At T = 0.5 the weights are squared: 1, 4, 9 (sum 14); id-order CDF 1/14, 5/14, 1.
  const r = sampleToken(logits, P({ temperature: 0.5 }), 0.9);
  assert.equal(r.token, 2);
  close(r.logprob, Math.log(9 / 14), 1e-6);
  close(r.rawLogprob, Math.log(3 / 6), 1e-6);
  close(r.sampledLogprob, Math.log(9 / 14), 1e-6);
  const p = [1 / 14, 4 / 14, 9 / 14];
  close(r.entropy, -p.reduce((a, x) => a + x * Math.log(x), 0), 1e-6);
  assert.equal(sampleToken(logits, P({ temperature: 0.5 }), 0.3).token, 1); // 1/14 <= 0.3 < 5/14
  assert.equal(sampleToken(logits, P({ temperature: 0.5 }), 0.05).token, 0);
  // Truncation changes the sampled distribution, not the behaviour logprob.
  const k = sampleToken(logits, P({ temperature: 0.5, top_k: 2 }), 0.0);
  assert.equal(k.token, 1);
  close(k.logprob, Math.log(4 / 14), 1e-6);
  close(k.sampledLogprob, Math.log(4 / 13), 1e-6);
  // Greedy: the argmax; logprob is the model's own at T = 1.
  const g = sampleToken(logits, P({ temperature: 0 }), 0.1);
  assert.deepEqual([g.token, g.sampledLogprob], [2, 0]);
  close(g.logprob, Math.log(0.5), 1e-6);
  close(g.rawLogprob, Math.log(0.5), 1e-6);
});

test('logits that cannot be sampled are rejected naming the token', () => {
  const p = P();
  assert.throws(
    () => sampleToken(Float32Array.from([0, NaN, 1]), p, 0.5),
    (e: unknown) => e instanceof SamplingError && /token 1 is NaN/.test(e.message),
  );
  assert.throws(() => sampleToken(Float32Array.from([0, 1, Infinity]), p, 0.5), /token 2 is Infinity/);
  assert.throws(() => sampleToken(Float32Array.from([-Infinity, -Infinity]), p, 0.5), /every logit is -Infinity/);
  assert.throws(() => sampleToken(new Float32Array(0), p, 0.5), /empty/);
  assert.throws(() => sampleToken(Float32Array.from([1]), p, 1), /uniform draw must be in \[0, 1\)/);
});

test('stop checker: EOS and stop tokens finish with "stop", unless ignore_eos', () => {
  const c = new StopChecker(P({ max_tokens: 10 }), [2, 7]);
  assert.equal(c.push(5, 'a'), null);
  assert.deepEqual(c.push(7, 'ab'), { reason: 'stop', text: 'ab', matched: 7, tokens: 2 });
  assert.throws(() => c.push(1, 'abc'), /already finished \(stop\)/);
  const ig = new StopChecker(P({ max_tokens: 3, ignore_eos: true, stop_token_ids: [9] }), [2]);
  assert.equal(ig.push(2, 'x'), null);
  assert.deepEqual(ig.push(9, 'xy'), { reason: 'stop', text: 'xy', matched: 9, tokens: 2 });
});

test('stop checker: max_tokens finishes with "length"; a stop token on the last step is still "stop"', () => {
  const c = new StopChecker(P({ max_tokens: 2 }), [2]);
  assert.equal(c.push(4, 'a'), null);
  assert.deepEqual(c.push(4, 'aa'), { reason: 'length', text: 'aa', matched: null, tokens: 2 });
  const d = new StopChecker(P({ max_tokens: 2 }), [2]);
  d.push(4, 'a');
  assert.equal(d.push(2, 'a')!.reason, 'stop');
});

test('stop checker: stop strings spanning tokens are found incrementally and cut from the text', () => {
  const pieces = ['The answer', ' is 4', '2.\n', '\nQuestion', ':'];
  const run = (params: SamplingParamsInput) => {
    const c = new StopChecker(P({ max_tokens: 100, ...params }), []);
    let text = '';
    for (const [i, piece] of pieces.entries()) {
      text += piece;
      const r = c.push(100 + i, text);
      if (r) return r;
    }
    return null;
  };
  assert.deepEqual(run({ stop: ['\n\n'] }), { reason: 'stop_string', text: 'The answer is 42.', matched: '\n\n', tokens: 4 });
  assert.deepEqual(run({ stop: ['\n\n'], include_stop_str_in_output: true }), {
    reason: 'stop_string',
    text: 'The answer is 42.\n\n',
    matched: '\n\n',
    tokens: 4,
  });
  // The earliest occurrence wins, whatever the list order.
  assert.deepEqual(run({ stop: ['Question:', 'is 42'] }), { reason: 'stop_string', text: 'The answer ', matched: 'is 42', tokens: 3 });
  assert.equal(run({ stop: ['nowhere'] }), null);
  // A stop string completed by a character that replaced a still-incomplete UTF-8 sequence.
  const c = new StopChecker(P({ stop: ['é!'] }), []);
  assert.equal(c.push(1, 'caf\uFFFD'), null);
  assert.equal(c.push(2, 'café'), null);
  assert.deepEqual(c.push(3, 'café!'), { reason: 'stop_string', text: 'caf', matched: 'é!', tokens: 3 });
});
