import assert from 'node:assert/strict';
import type { AdvantageSample } from '../../../activities/advantage/types.js';

/** Samples of one group: ids `${group}-${i}`, with optional completion lengths. */
export function group(groupId: string, rewards: number[], lengths?: number[]): AdvantageSample[] {
  return rewards.map((reward, i) => ({
    sampleId: `${groupId}-${i}`,
    groupId,
    reward,
    ...(lengths ? { completionLength: lengths[i] } : {}),
  }));
}

/** Element-wise closeness, with a message that shows both vectors. */
export function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol = 1e-9): void {
  const a = Array.from(actual);
  const e = Array.from(expected);
  assert.equal(a.length, e.length, `length ${a.length} != ${e.length}: ${JSON.stringify(a)} vs ${JSON.stringify(e)}`);
  a.forEach((v, i) => assert.ok(Math.abs(v - e[i]!) <= tol, `index ${i}: ${v} != ${e[i]} (${JSON.stringify(a)} vs ${JSON.stringify(e)})`));
}
