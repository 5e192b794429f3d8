/**
 * Reflect-then-retry (activities/rollout/retry-rollout.ts, R^3L) with the policy and the reward
 * injected: the failure point, its mapping from a character to a token, and the rows it builds.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  failurePoint,
  minLogprobPosition,
  reflectionText,
  rolloutRetries,
  tokenAtChar,
  type RetryCompletion,
  type RetryDecodeJob,
} from '../../../activities/rollout/retry-rollout.js';

// a toy tokenizer: token 0 is EOS (empty text), token 1 writes "ab", tokens 2..9 write the digit id - 2
const EOS = 0;
const text = (ts: readonly number[]) => ts.map((t) => (t === EOS ? '' : t === 1 ? 'ab' : String(t - 2))).join('');
const isStop = (t: number) => t === EOS;
const completion = (tokens: number[], logprobs = tokens.map(() => -1)): RetryCompletion => ({
  tokens,
  logprobs,
  text: text(tokens.filter((t) => t !== EOS)),
  finishReason: tokens.at(-1) === EOS ? 'stop' : 'length',
});

describe('failure point', () => {
  it('tokenAtChar maps a character to the token holding it: "3ab5" chars 0,1,2,3 → tokens 0,1,1,2; the end → the EOS (index 3); no EOS → null', () => {
    const ts = [5, 1, 7, EOS];
    assert.deepEqual(
      [0, 1, 2, 3, 4, 9].map((c) => tokenAtChar(ts, c, text, isStop)),
      [0, 1, 1, 2, 3, 3],
    );
    assert.equal(tokenAtChar([5, 1, 7], 4, text, isStop), null);
  });

  it('minLogprobPosition: the lowest behaviour logprob, first on ties ([-1, -3, -0.5, -3] → 1)', () => {
    assert.equal(minLogprobPosition([-1, -3, -0.5, -3]), 1);
    assert.equal(minLogprobPosition([]), 0);
  });

  it("failurePoint: the task's position when it maps to a token, else the fallback (min_logprob or start)", () => {
    const c = completion([5, 6, 7, EOS], [-0.1, -2, -0.3, -0.2]);
    const deps = { text, isStop };
    assert.deepEqual(
      failurePoint(c, { fallback: 'min_logprob' }, deps, () => 2),
      { pivot: 2, from: 'task' },
    );
    assert.deepEqual(
      failurePoint(c, { fallback: 'min_logprob' }, deps, () => null),
      { pivot: 1, from: 'min_logprob' },
    );
    assert.deepEqual(failurePoint(c, { fallback: 'start' }, deps, null), { pivot: 0, from: 'start' });
    assert.deepEqual(
      failurePoint(completion([5, 6], [-0.1, -2]), { fallback: 'min_logprob' }, deps, () => 5),
      { pivot: 1, from: 'min_logprob' },
      'past a truncated completion: fallback',
    );
  });

  it('reflectionText fills {completion} and {pivot}', () => {
    assert.equal(reflectionText('{completion}!{pivot}', completion([5, 6, EOS]), 1), '34!1');
  });
});

describe('rolloutRetries', () => {
  it('one retry per failed sample, sample ids G+k, prefix copied, a pivot-0 retry a fresh sample; successes and failed rewards not retried; maxPerGroup caps', async () => {
    const groups = [[completion([5, 6, EOS]), completion([5, 7, EOS]), completion([8, EOS]), completion([5, EOS])]];
    const jobs: RetryDecodeJob[] = [];
    const deps = {
      score: async () => [[1, 0, 0, null]],
      firstError: (_g: number, t: string) => (t === '35' ? 1 : 0),
      text,
      isStop,
      decode: async (js: readonly RetryDecodeJob[]) => {
        jobs.push(...js);
        return js.map((j) => completion([...j.prefix.tokens, 9, EOS], [...j.prefix.logprobs, -0.5, -0.1]));
      },
    };
    const r = await rolloutRetries(
      ['p'],
      groups.map((g) => g.map((c) => ({ completion: c }))),
      { maxPerGroup: null, fallback: 'min_logprob', reflection: null },
      1,
      deps,
    );
    assert.deepEqual(
      r.nodes.map((n) => [n.sampleId, n.nodeId, n.parentNodeId, n.branchPosition]),
      [
        [0, 'p/0', null, 0],
        [1, 'p/1', null, 0],
        [2, 'p/2', null, 0],
        [3, 'p/3', null, 0],
        [4, 'p/4', 'p/1', 1],
        [5, 'p/5', null, 0],
      ],
    );
    assert.deepEqual(r.nodes[4]!.completion.tokens, [5, 9, EOS]);
    assert.deepEqual(
      jobs.map((j) => [j.streamKey, [...j.prefix.tokens]]),
      [
        ['p/4', [5]],
        ['p/5', []],
      ],
    );
    assert.deepEqual([r.retries, r.taskPivots, r.fallbackPivots], [2, 2, 0]);
    const capped = await rolloutRetries(
      ['p'],
      groups.map((g) => g.map((c) => ({ completion: c }))),
      { maxPerGroup: 1, fallback: 'min_logprob', reflection: 'x{pivot}' },
      1,
      deps,
    );
    assert.equal(capped.retries, 1);
    assert.equal(jobs.at(-1)!.reflection, 'x1');
  });

  it('refuses a decode that changes the copied prefix', async () => {
    const deps = {
      score: async () => [[0, 1]],
      text,
      isStop,
      firstError: () => 1,
      decode: async (js: readonly RetryDecodeJob[]) => js.map(() => completion([6, 9, EOS])),
    };
    await assert.rejects(
      rolloutRetries(
        ['p'],
        [[{ completion: completion([5, 6, EOS]) }, { completion: completion([5, EOS]) }]],
        { maxPerGroup: null, fallback: 'start', reflection: null },
        1,
        deps,
      ),
      /changed the copied prefix at position 0/,
    );
  });
});
