/**
 * Multi-digit addition. Everything is a pure function of the seed (counter-based RNG), so the same
 * seed gives the same problems on every machine.
 *
 * `additionTask` / `additionReward`: the `addition` task for training a character-level model,
 * "123+45=" → "168", with train/eval splits, difficulty knobs and its exact-match reward.
 */
import { z } from '../common/config.js';
import { extractTag } from '../reward/extract.js';
import { defineReward, instantiateReward, requireReference, type RewardDefinition, type RewardScorer } from '../reward/types.js';
import { splitItems, type Draws } from './split.js';
import { defineTask, type TaskBody, type TaskItem } from './types.js';

// ---------------------------------------------------------------------------------------------
// The `addition` task: compact prompts for a character-level model, "123+45=" → "168".

export const AdditionRewardOptions = z.strictObject({
  /**
   * Completions write the sum's digits least significant first ("168" is written "861"), as the
   * task's `reverse` option asks. Reversed output makes addition far easier to learn for small
   * transformers: each digit depends only on digits already seen (Lee et al. 2023, "Teaching
   * Arithmetic to Small Transformers").
   */
  reversed: z.boolean().default(false),
  /** Reward of a correct sum. */
  correctReward: z.number().default(1),
  /**
   * Reward of a well-formed but wrong answer (digits only). 0 by default; a small value (e.g. 0.1,
   * as TinyZero's format score) teaches the format before the arithmetic.
   */
  formatReward: z.number().default(0),
  /** When the completion holds `<answerTag>...</answerTag>`, the last such span is the answer; else the whole completion. */
  answerTag: z.string().min(1).default('answer'),
});
export type AdditionRewardOptions = z.output<typeof AdditionRewardOptions>;

/**
 * Exact numeric match of the completion against the reference sum. The answer must be digits only
 * (surrounding whitespace ignored; leading zeros allowed, as numbers they change nothing).
 * Components: `correct` and `well_formed` (0/1 each).
 */
export const additionReward: RewardDefinition<typeof AdditionRewardOptions> = defineReward({
  name: 'addition',
  description: 'exact numeric match of a digits-only sum (optionally written reversed), with an optional format reward',
  source: 'verifiable arithmetic reward (RLVR); reversed output: Lee et al. 2023',
  optionsSchema: AdditionRewardOptions,
  create: (o): RewardScorer<AdditionRewardOptions> => ({
    score(sample) {
      const ref = requireReference(sample, 'addition')[0]!.trim();
      if (!/^\d+$/.test(ref)) {
        throw new Error(
          `reward addition: the reference of sample ${sample.promptId}/${sample.sampleId} must be a whole number in digits, got ${JSON.stringify(ref)}`,
        );
      }
      const answer = (extractTag(sample.completion, o.answerTag) ?? sample.completion).trim();
      const wellFormed = /^\d{1,40}$/.test(answer);
      const digits = o.reversed ? [...answer].reverse().join('') : answer;
      const correct = wellFormed && BigInt(digits) === BigInt(ref);
      return {
        reward: correct ? o.correctReward : wellFormed ? o.formatReward : 0,
        components: { correct: correct ? 1 : 0, well_formed: wellFormed ? 1 : 0 },
      };
    },
  }),
});

/**
 * The addition task's `firstError` (R^3L's failure point): where a bare completion (no answer tag)
 * first leaves every answer the reward accepts for the sum `reference` — the digits of the sum with
 * any number of leading zeros, or written reversed with any number of trailing zeros. Leading
 * whitespace is skipped. Returns the index of the first character that no accepted answer has
 * there, the end of the answer when it is a correct answer cut short ("86" for 168 reversed: 2),
 * and null when the trimmed completion is accepted or it holds an answer tag (the reward then reads
 * the tag's contents, whose position this does not trace).
 */
export function additionFirstError(reference: string, completion: string, reversed: boolean, answerTag = 'answer'): number | null {
  if (!/^\d+$/.test(reference))
    throw new Error(`addition firstError: reference must be a whole number in digits, got ${JSON.stringify(reference)}`);
  if (completion.includes(`<${answerTag}>`)) return null;
  const ref = reference.replace(/^0+(?=\d)/, '');
  const rev = [...ref].reverse().join('');
  // p is a prefix of some accepted answer / is an accepted answer
  const prefixOk = (p: string) =>
    reversed
      ? p.length <= rev.length
        ? rev.startsWith(p)
        : p.startsWith(rev) && /^0*$/.test(p.slice(rev.length))
      : ref.startsWith(p.replace(/^0+/, '')) || (ref === '0' && /^0*$/.test(p));
  const complete = (p: string) =>
    reversed
      ? p.startsWith(rev) && /^0*$/.test(p.slice(rev.length))
      : p.length > 0 && (p.replace(/^0+/, '') === ref || (ref === '0' && /^0+$/.test(p)));
  const start = completion.length - completion.trimStart().length;
  const body = completion.slice(start);
  if (complete(body.trimEnd())) return null;
  let n = 0;
  while (n < body.length && prefixOk(body.slice(0, n + 1))) n++;
  return start + n;
}

export const AdditionTaskOptions = z
  .strictObject({
    /** Fewest digits of an operand. */
    minDigits: z.int().min(1).max(15).default(1),
    /**
     * Most digits of an operand (difficulty). Each operand's length is drawn uniformly from
     * [minDigits, maxDigits], then its value uniformly among numbers of that length, so short
     * problems stay common enough for a curriculum-free warm-up.
     */
    maxDigits: z.int().min(1).max(15).default(3),
    /** Gold completions (and the reward) write the sum reversed; see the reward's `reversed`. */
    reverse: z.boolean().default(false),
    /**
     * Zero-pad operands to `maxDigits` and gold sums to `maxDigits + 1` digits ("007+045=" → "0052"):
     * every digit then sits at a fixed position, so a small model need not learn to align operands of
     * different lengths. The reward reads numbers, so padded and unpadded answers score alike.
     */
    pad: z.boolean().default(false),
    /** Fraction of all problems held out for the eval split (by problem, never by seed). */
    evalFraction: z.number().gt(0).lt(1).default(0.1),
    /** Reward of a well-formed wrong answer (the reward's `formatReward`). */
    formatReward: z.number().default(0),
  })
  .refine((o) => o.minDigits <= o.maxDigits, { message: 'minDigits must not exceed maxDigits', path: ['minDigits'] });
export type AdditionTaskOptions = z.output<typeof AdditionTaskOptions>;

/** A number of exactly `len` digits (0..9 for one digit). */
function operand(d: Draws, len: number): number {
  return len === 1 ? d.intIn(0, 9) : d.intIn(10 ** (len - 1), 10 ** len - 1);
}

export const additionTask = defineTask({
  name: 'addition',
  description: 'add two multi-digit numbers: "123+45=" → "168" (optionally written reversed)',
  source: 'multi-digit addition as in Lee et al. 2023, "Teaching Arithmetic to Small Transformers"',
  optionsSchema: AdditionTaskOptions,
  create(o): TaskBody<AdditionTaskOptions> {
    const reward = { name: 'addition', options: { reversed: o.reverse, formatReward: o.formatReward } };
    /** A number in digits, zero-padded to `width` when the task pads. */
    const show = (x: number, width: number) => (o.pad ? String(x).padStart(width, '0') : String(x));
    const task: TaskBody<AdditionTaskOptions> = {
      prompts(seed, split, count, offset = 0) {
        return splitItems({
          task: 'addition',
          seed,
          split,
          count,
          offset,
          evalFraction: o.evalFraction,
          maxAttempts: 2000,
          hint: 'Raise maxDigits or lower minDigits (more problems), or move evalFraction away from 0/1.',
          candidate(d) {
            const a = operand(d, d.intIn(o.minDigits, o.maxDigits));
            const b = operand(d, d.intIn(o.minDigits, o.maxDigits));
            return {
              key: a <= b ? `${a}+${b}` : `${b}+${a}`,
              item: { prompt: `${show(a, o.maxDigits)}+${show(b, o.maxDigits)}=`, reference: String(a + b), metadata: { a, b } },
            };
          },
        });
      },
      sftTarget(item: TaskItem) {
        if (!/^\d{1,16}$/.test(item.reference))
          throw new Error(`addition sftTarget: item ${item.promptId} has reference ${JSON.stringify(item.reference)}, not a sum in digits`);
        const sum = show(Number(item.reference), o.maxDigits + 1);
        return o.reverse ? [...sum].reverse().join('') : sum;
      },
      firstError: (item, completion) => additionFirstError(item.reference, completion, o.reverse),
      reward,
      rewardDefinition: additionReward as unknown as RewardDefinition,
      createReward: () => instantiateReward(additionReward, reward.options),
      alphabet: '0123456789+=',
      maxPromptChars: 2 * o.maxDigits + 2,
      maxCompletionChars: o.maxDigits + 1,
    };
    return task;
  },
});
