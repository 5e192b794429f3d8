/**
 * The reward module of the GSM8K-style example (docs/configs/gsm8k-style.yaml): reward functions
 * of your own, in TypeScript, as a run's `reward.functions` loads them (activities/reward/
 * functions.ts). Each export is a plain function `(sample, ctx) => number | RewardResult`; the run
 * config picks exports by name, weighs them and marks which are verifiable:
 *
 *   reward:
 *     functions:
 *       - { module: ../rewards/gsm8k.ts, export: correctness, weight: 1.0, verifiable: true }
 *       - { module: ../rewards/gsm8k.ts, export: format, weight: 0.2 }
 *
 * `sample.reference` is the dataset's reference column (`answer`); every other column of the row
 * is in `sample.metadata`. The metrics and the report show each function as `reward/<export>`.
 */
import { createReward } from '../../activities/reward/registry.js';
import type { RewardContext, RewardResult, RewardSample } from '../../activities/reward/types.js';

/** The registry's math_equivalence, reading the answer from the last `<answer>` tag only. */
const math = createReward({ name: 'math_equivalence', options: { extract: ['answer_tag'] } });

/**
 * 1 when the number in the completion's last `<answer>` tag equals the reference, else 0 (also 0
 * without a tag). Exact rationals: `12`, `12.0` and `24/2` are all 12. A GSM8K solution as the
 * reference (`… #### 12`) is read as its final number. Components `correct` and `answered`.
 */
export async function correctness(sample: RewardSample, ctx: RewardContext): Promise<RewardResult> {
  return math.score!(sample, ctx);
}

/** A whole or decimal number, optionally negative, with optional thousands separators. */
const NUMBER = /^-?\d{1,3}(,?\d{3})*(\.\d+)?$/;

/**
 * The format reward: 1 when the completion ends with its one and only `<answer>…</answer>` and
 * the tag holds a plain number; 0.5 when it has that one tag at its end around anything else; 0
 * otherwise (no tag, several, or text after it).
 */
export function format(sample: RewardSample): number {
  const text = sample.completion.trim();
  const opens = text.split('<answer>').length - 1;
  const closes = text.split('</answer>').length - 1;
  if (opens !== 1 || closes !== 1 || !text.endsWith('</answer>')) return 0;
  const inner = text.slice(text.indexOf('<answer>') + '<answer>'.length, -'</answer>'.length).trim();
  return NUMBER.test(inner) ? 1 : 0.5;
}
