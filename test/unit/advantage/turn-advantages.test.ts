/**
 * Per-turn advantages of episodes (activities/advantage/turn-advantages.ts, the environment option
 * `advantage: turn`): each turn's return normalised over the group's episodes that reached it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tokenTurns, turnAdvantages } from '../../../activities/advantage/turn-advantages.js';
import { assertClose } from './helpers.js';

const E = 1e-6;

test('outcome only, 3 episodes of a group with rewards 1, 0, 1 and 2, 1, 2 turns: turn 0 over all three ((1 − 2/3)/0.57735 = 0.57735, −1.1547), turn 1 over the two that reached it (equal: 0)', () => {
  const [a, b, c] = turnAdvantages([
    { groupId: 'g', reward: 1, tokenTurns: [0, 0, -1, 1] },
    { groupId: 'g', reward: 0, tokenTurns: [0, 0] },
    { groupId: 'g', reward: 1, tokenTurns: [0, -1, -1, 1, 1] },
  ]);
  const sd = Math.sqrt(((1 / 3) ** 2 * 2 + (2 / 3) ** 2) / 2);
  const up = (1 - 2 / 3) / (sd + E);
  assertClose(Array.from(a!), [up, up, 0, 0], 1e-9);
  assertClose(Array.from(b!), [(0 - 2 / 3) / (sd + E), (0 - 2 / 3) / (sd + E)], 1e-9);
  assertClose(Array.from(c!), [up, 0, 0, 0, 0], 1e-9);
});

test('process rewards: a turn-1 process reward 0.5 on one of two 2-turn episodes (outcomes 1, 1) raises both its turns: returns [1.5, 1.5] vs [1, 1] → ±0.7071 at each turn', () => {
  const [a, b] = turnAdvantages([
    { groupId: 'g', reward: 1, tokenTurns: [0, 1, 1], tokenRewards: [0, 0, 0.5] },
    { groupId: 'g', reward: 1, tokenTurns: [0, 1, 1], tokenRewards: [0, 0, 0] },
  ]);
  const x = 0.25 / (Math.sqrt(0.125) + E);
  assertClose(Array.from(a!), [x, x, x], 1e-9);
  assertClose(Array.from(b!), [-x, -x, -x], 1e-9);
});

test('a later turn process reward counts for earlier turns only through the return: p = 0.5 on turn 0 of one episode lifts only its turn 0 (turn 1 returns tie at 1)', () => {
  const [a, b] = turnAdvantages([
    { groupId: 'g', reward: 1, tokenTurns: [0, 1], tokenRewards: [0.5, 0] },
    { groupId: 'g', reward: 1, tokenTurns: [0, 1], tokenRewards: [0, 0] },
  ]);
  const x = 0.25 / (Math.sqrt(0.125) + E);
  assertClose(Array.from(a!), [x, 0], 1e-9);
  assertClose(Array.from(b!), [-x, 0], 1e-9);
});

test('groups are separate, and a turn only one episode reached gets 0', () => {
  const [a, b] = turnAdvantages([
    { groupId: 'g1', reward: 1, tokenTurns: [0, 1] },
    { groupId: 'g2', reward: 0, tokenTurns: [0] },
  ]);
  assert.deepEqual(Array.from(a!), [0, 0]);
  assert.deepEqual(Array.from(b!), [0]);
});

test('tokenTurns reads the segments: policy [0,2) turn 0, observation [2,4), policy [4,5) turn 1 → [0, 0, -1, -1, 1]; a single completion is all turn 0', () => {
  assert.deepEqual(
    Array.from(
      tokenTurns({
        completion_token_ids: [1, 2, 3, 4, 5],
        segment_ends: [2, 4, 5],
        segment_roles: ['policy', 'observation', 'policy'],
        segment_turns: [0, 0, 1],
      }),
    ),
    [0, 0, -1, -1, 1],
  );
  assert.deepEqual(
    Array.from(tokenTurns({ completion_token_ids: [1, 2], segment_ends: null, segment_roles: null, segment_turns: null })),
    [0, 0],
  );
});
