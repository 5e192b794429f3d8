/**
 * The `countdown` task and reward: given a few numbers and a target, write an arithmetic expression
 * (+ - * /, parentheses) over the numbers that equals the target. The RL task of TinyZero (Pan et
 * al. 2025), after the television game; small, seeded, verifiable, and learnable from scratch by a
 * tiny character-level model when the knobs are turned down (fewer and smaller numbers, fewer
 * operators).
 *
 * Compact format (default): prompt `92,51,39,60>62:`, gold completion `92-51-39+60` (the solver's
 * shortest solution). Instruct format: a sentence prompt and `<answer>...</answer>` completions, for
 * pretrained models.
 */
import { z } from '../common/config.js';
import { extractTag } from '../reward/extract.js';
import { defineReward, instantiateReward, type RewardDefinition, type RewardScorer, type RewardSample } from '../reward/types.js';
import {
  checkCountdown,
  randomCountdown,
  solveCountdown,
  type CountdownInstance,
  type CountdownRules,
  type CountdownVerdict,
} from './countdown-solver.js';
import { OPS, printExpression, type Op } from './expression.js';
import { splitItems } from './split.js';
import { defineTask, type TaskBody, type TaskItem } from './types.js';

// ---------------------------------------------------------------------------------------------
// Options shared by the task and its reward: the rules of a valid answer.

const ruleOptions = {
  /**
   * `exactly_once`: every given number appears exactly once (TinyZero's rule). `at_most_once`: any
   * subset of the numbers, each at most once (the television game's rule).
   */
  numberUse: z.enum(['exactly_once', 'at_most_once']).default('exactly_once'),
  /**
   * Which intermediate results are allowed: `rational` (any fraction, e.g. `(7-3/4)*4`; TinyZero
   * evaluated answers as Python expressions), `integer` (every division exact), `natural` (positive
   * whole numbers only, the television game's rule).
   */
  intermediates: z.enum(['rational', 'integer', 'natural']).default('rational'),
  /** Operators an answer may use (fewer operators: an easier task). */
  operators: z
    .array(z.enum(['+', '-', '*', '/']))
    .min(1)
    .refine((ops) => new Set(ops).size === ops.length, { message: 'operators must not repeat' })
    .default(['+', '-', '*', '/']),
};

// ---------------------------------------------------------------------------------------------
// The reward

export const CountdownRewardOptions = z.strictObject({
  ...ruleOptions,
  /** Reward of a correct answer. */
  correctReward: z.number().default(1),
  /**
   * Reward of a well-formed expression (it parses) that is not a correct answer: wrong numbers,
   * wrong value, a division by zero. TinyZero's format score, 0.1.
   */
  formatReward: z.number().default(0.1),
  /** When the completion holds `<answerTag>...</answerTag>`, the last such span is the answer; else the whole completion. */
  answerTag: z.string().min(1).default('answer'),
  /** Accept a trailing stated result, `3*8 = 24`: the `= N` is dropped before checking (its N is not trusted). */
  allowStatedResult: z.boolean().default(true),
});
export type CountdownRewardOptions = z.output<typeof CountdownRewardOptions>;

const VERDICTS: readonly CountdownVerdict[] = ['unparseable', 'numbers', 'operator', 'division_by_zero', 'intermediate', 'value'];

const InstanceMetadata = z.object({
  numbers: z.array(z.int().min(0).max(Number.MAX_SAFE_INTEGER)).min(1),
  target: z.int().min(Number.MIN_SAFE_INTEGER).max(Number.MAX_SAFE_INTEGER),
});

/** The instance a sample is about, from its metadata; a data error (thrown) when it is missing or malformed. */
export function countdownInstance(
  sample: Pick<RewardSample, 'promptId' | 'metadata'> & { sampleId?: string | number },
  who = 'reward countdown',
): CountdownInstance {
  const r = InstanceMetadata.safeParse(sample.metadata ?? {});
  if (!r.success) {
    const where = r.error.issues.map((i) => `metadata.${i.path.join('.')}: ${i.message}`).join('; ');
    throw new Error(
      `${who}: sample ${sample.promptId}${sample.sampleId === undefined ? '' : `/${sample.sampleId}`} needs metadata { numbers: whole numbers[], target: whole number } (${where})`,
    );
  }
  return r.data;
}

/** The answer text of a completion: the last answer-tag span, or all of it; a trailing `= N` dropped when allowed. */
export function countdownAnswer(completion: string, o: Pick<CountdownRewardOptions, 'answerTag' | 'allowStatedResult'>): string {
  let s = (extractTag(completion, o.answerTag) ?? completion).trim();
  if (o.allowStatedResult) s = s.replace(/\s*=\s*-?\d+(?:\.\d+)?\s*$/, '');
  return s;
}

/**
 * Components: `correct`, `well_formed` (the answer parses), and one `fail_*` per reason an answer
 * misses — `fail_unparseable`, `fail_numbers`, `fail_operator`, `fail_division_by_zero`,
 * `fail_intermediate`, `fail_value` — each 0/1, always all present, exactly one of `correct` and
 * the `fail_*` set to 1.
 */
export const countdownReward: RewardDefinition<typeof CountdownRewardOptions> = defineReward({
  name: 'countdown',
  description:
    'an arithmetic expression over the given numbers that equals the target (exact rationals, number usage checked), with a format reward',
  source: 'TinyZero Countdown (Pan et al. 2025)',
  optionsSchema: CountdownRewardOptions,
  create: (o): RewardScorer<CountdownRewardOptions> => ({
    score(sample) {
      const inst = countdownInstance(sample);
      const check = checkCountdown(countdownAnswer(sample.completion, o), inst, o);
      const components: Record<string, number> = {
        correct: check.verdict === 'correct' ? 1 : 0,
        well_formed: check.verdict === 'unparseable' ? 0 : 1,
      };
      for (const v of VERDICTS) components[`fail_${v}`] = check.verdict === v ? 1 : 0;
      const reward = check.verdict === 'correct' ? o.correctReward : check.verdict === 'unparseable' ? 0 : o.formatReward;
      return { reward, components };
    },
  }),
});

// ---------------------------------------------------------------------------------------------
// The task

export const CountdownTaskOptions = z
  .strictObject({
    ...ruleOptions,
    /** Fewest numbers in an instance. */
    minNumbers: z.int().min(2).max(5).default(3),
    /** Most numbers in an instance (difficulty; 5 at most, so the exhaustive solver stays fast). */
    maxNumbers: z.int().min(2).max(5).default(4),
    /** Smallest given number. */
    minNumber: z.int().min(0).max(1_000_000).default(1),
    /** Largest given number (difficulty: fewer digits to read and write). */
    maxNumber: z.int().min(1).max(1_000_000).default(99),
    /** Smallest target. */
    minTarget: z.int().min(0).max(1_000_000_000).default(1),
    /** Largest target. TinyZero's numbers are 1-99 or so with targets up to about 100. */
    maxTarget: z.int().min(0).max(1_000_000_000).default(100),
    /** `compact` prompts (`3,7,25,50>24:`, for a char-level model) or `instruct` prompts (a sentence, `<answer>` tags). */
    format: z.enum(['compact', 'instruct']).default('compact'),
    /** Fraction of all instances (by sorted numbers and target) held out for the eval split. */
    evalFraction: z.number().gt(0).lt(1).default(0.1),
    /** Reward of a well-formed answer that misses (the reward's `formatReward`; TinyZero 0.1). */
    formatReward: z.number().default(0.1),
    /**
     * Which solution `sftTarget` writes: `shortest` (fewest parentheses, found by visiting every
     * solution: uniform, easier-to-imitate gold answers; about 1 ms per instance of four numbers, up to
     * a few hundred ms for five) or `first` (the first the search meets: fast).
     */
    sftSolution: z.enum(['shortest', 'first']).default('shortest'),
  })
  .refine((o) => o.minNumbers <= o.maxNumbers, { message: 'minNumbers must not exceed maxNumbers', path: ['minNumbers'] })
  .refine((o) => o.minNumber <= o.maxNumber, { message: 'minNumber must not exceed maxNumber', path: ['minNumber'] })
  .refine((o) => o.minTarget <= o.maxTarget, { message: 'minTarget must not exceed maxTarget', path: ['minTarget'] })
  .refine((o) => o.intermediates !== 'natural' || o.minNumber >= 1, {
    message: 'the natural rule allows positive numbers only: set minNumber to 1 or more, or use intermediates "integer"',
    path: ['minNumber'],
  });
export type CountdownTaskOptions = z.output<typeof CountdownTaskOptions>;

const useWords = { exactly_once: 'exactly once', at_most_once: 'at most once' } as const;

function promptText(inst: CountdownInstance, o: CountdownTaskOptions): string {
  if (o.format === 'compact') return `${inst.numbers.join(',')}>${inst.target}:`;
  return (
    `Using the numbers [${inst.numbers.join(', ')}], write an arithmetic expression that equals ${inst.target}. ` +
    `You may use ${o.operators.join(' ')} and parentheses, and each number ${useWords[o.numberUse]}. ` +
    'Think it through inside <think> </think>, then give only the expression inside <answer> </answer>, ' +
    'for example <answer>(1 + 2) * 3</answer>.\n'
  );
}

/** The instruct format's alphabet: printable ASCII and newline (a pretrained model writes prose). */
const PRINTABLE = Array.from({ length: 95 }, (_, i) => String.fromCharCode(32 + i)).join('') + '\n';

export const countdownTask = defineTask({
  name: 'countdown',
  description: 'reach a target with the given numbers and + - * / (TinyZero Countdown)',
  source: 'TinyZero (Pan et al. 2025), after the Countdown numbers game',
  optionsSchema: CountdownTaskOptions,
  create(o): TaskBody<CountdownTaskOptions> {
    const rules: CountdownRules = { numberUse: o.numberUse, intermediates: o.intermediates, operators: o.operators as Op[] };
    const rewardOptions = { numberUse: o.numberUse, intermediates: o.intermediates, operators: o.operators, formatReward: o.formatReward };
    const widest = { numbers: Array<number>(o.maxNumbers).fill(o.maxNumber), target: o.maxTarget };
    const n = o.maxNumbers;
    const answerChars = n * String(o.maxNumber).length + (n - 1) + 2 * Math.max(0, n - 2);
    const sftAnswer = (inst: CountdownInstance, promptId: string) => {
      const e = solveCountdown(inst, rules, o.sftSolution);
      if (!e)
        throw new Error(
          `countdown: item ${promptId} (numbers ${inst.numbers.join(', ')}, target ${inst.target}) has no solution under these rules`,
        );
      return o.format === 'compact' ? printExpression(e) : `<answer>${printExpression(e, true)}</answer>`;
    };
    return {
      prompts(seed, split, count, offset = 0) {
        return splitItems({
          task: 'countdown',
          seed,
          split,
          count,
          offset,
          evalFraction: o.evalFraction,
          maxAttempts: 2000,
          hint: 'Widen [minTarget, maxTarget] or [minNumber, maxNumber], allow more operators, or relax intermediates.',
          candidate(d) {
            const inst = randomCountdown(d, o, rules);
            if (!inst) return null;
            const sorted = [...inst.numbers].sort((a, b) => a - b);
            return {
              key: `${sorted.join(',')}>${inst.target}`,
              item: {
                prompt: promptText(inst, o),
                reference: String(inst.target),
                metadata: { numbers: inst.numbers, target: inst.target },
              },
            };
          },
        });
      },
      sftTarget(item: TaskItem) {
        return sftAnswer(countdownInstance(item, 'countdown sftTarget'), item.promptId);
      },
      reward: { name: 'countdown', options: rewardOptions },
      rewardDefinition: countdownReward as unknown as RewardDefinition,
      createReward: () => instantiateReward(countdownReward, rewardOptions),
      alphabet: o.format === 'compact' ? `0123456789,>:${OPS.filter((op) => o.operators.includes(op)).join('')}()` : PRINTABLE,
      maxPromptChars: [...promptText(widest, o)].length,
      maxCompletionChars: o.format === 'compact' ? answerChars : answerChars + 2 * (n - 1) + '<answer></answer>'.length,
    };
  },
});
