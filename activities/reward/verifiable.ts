/**
 * Verifiable rewards (RLVR): a completion is right or wrong against the data set's reference.
 *
 * - `exact_match`: the extracted answer equals a reference after normalisation (case, whitespace,
 *   punctuation at the ends, optional SQuAD-style article removal; all configurable).
 * - `math_equivalence`: the extracted answer and the reference are parsed by `math.ts` (a tokenizer
 *   and recursive-descent parser, not string tricks) and compared as exact rationals where possible,
 *   with a relative tolerance otherwise. Symbolic answers the parser cannot read fall back to a
 *   normalised string comparison (configurable).
 * - `multiple_choice`: the chosen letter, extracted robustly (`extract.ts`), against the reference letter.
 *
 * Answer extraction is the DeepSeek-R1 / GSM8K / MATH convention: `<answer>` tags, `\boxed{}`,
 * `#### X`, "The answer is X", the last number.
 *
 * A completion without an answer is not an error (it earns `noAnswerReward`, component `answered: 0`);
 * a sample without a reference, or a reference that cannot be read, is an error of the data and throws.
 */
import { z } from '../common/config.js';
import { extractAnswer, extractBoxed, extractChoice, extractHash, type ExtractMethod } from './extract.js';
import { answersEqual, cleanMath, MathParseError, parseMath, type MathAnswer } from './math.js';
import { defineReward, requireReference, type RewardResult } from './types.js';

const extractMethod = z.enum(['answer_tag', 'boxed', 'hash', 'answer_is', 'last_number', 'whole']);

/** Reward values shared by the verifiable rewards. */
const outcomeRewards = {
  /** Reward of a correct answer. */
  correctReward: z.number().default(1),
  /** Reward of a wrong answer. */
  wrongReward: z.number().default(0),
  /** Reward when no answer could be extracted (some recipes penalise it, e.g. -1). */
  noAnswerReward: z.number().default(0),
};

function outcome(
  o: { correctReward: number; wrongReward: number; noAnswerReward: number },
  answered: boolean,
  correct: boolean,
): RewardResult {
  const reward = !answered ? o.noAnswerReward : correct ? o.correctReward : o.wrongReward;
  return { reward, components: { correct: correct ? 1 : 0, answered: answered ? 1 : 0 } };
}

// ---------------------------------------------------------------------------------------------
// exact_match

export const ExactMatchOptions = z.strictObject({
  /** Where the answer is in the completion, tried in order; `whole` is the whole completion. */
  extract: z.array(extractMethod).min(1).default(['answer_tag', 'boxed', 'whole']),
  /** Tag name for `answer_tag` (`<answer>...</answer>`). */
  answerTag: z.string().min(1).default('answer'),
  /** Compare case-sensitively. */
  caseSensitive: z.boolean().default(false),
  /** Whitespace: `collapse` runs to one space, `remove` all of it, `keep` as is (ends are always trimmed). */
  whitespace: z.enum(['collapse', 'remove', 'keep']).default('collapse'),
  /** Punctuation: strip it at the `ends`, everywhere (`all`), or `none`. */
  punctuation: z.enum(['ends', 'all', 'none']).default('ends'),
  /** Drop the English articles a/an/the (SQuAD's answer normalisation). */
  removeArticles: z.boolean().default(false),
  /** Unicode normalisation form applied first (`NFKC` folds full-width forms, ligatures). */
  unicode: z.enum(['NFKC', 'NFC', 'none']).default('NFKC'),
  ...outcomeRewards,
});
export type ExactMatchOptions = z.output<typeof ExactMatchOptions>;

/** Normalises a string for exact-match comparison under the given options. */
export function normalizeAnswer(
  text: string,
  o: Pick<ExactMatchOptions, 'caseSensitive' | 'whitespace' | 'punctuation' | 'removeArticles' | 'unicode'>,
): string {
  let s = o.unicode === 'none' ? text : text.normalize(o.unicode);
  if (!o.caseSensitive) s = s.toLowerCase();
  if (o.punctuation === 'all') s = s.replace(/\p{P}+/gu, ' ');
  if (o.removeArticles) s = s.replace(/\b(?:a|an|the)\b/giu, ' ');
  s = s.trim();
  if (o.punctuation === 'ends') s = s.replace(/^[\p{P}\s]+|[\p{P}\s]+$/gu, '');
  if (o.whitespace === 'collapse') s = s.replace(/\s+/gu, ' ');
  else if (o.whitespace === 'remove') s = s.replace(/\s+/gu, '');
  return s.trim();
}

export const exactMatch = defineReward({
  name: 'exact_match',
  description: 'extracted answer equals a reference after normalisation (case, whitespace, punctuation, articles)',
  source: 'SQuAD exact match (Rajpurkar et al. 2016); R1-style <answer> extraction',
  optionsSchema: ExactMatchOptions,
  create: (o) => ({
    score(sample) {
      const refs = requireReference(sample, 'exact_match').map((r) => normalizeAnswer(r, o));
      const found = extractAnswer(sample.completion, o.extract as ExtractMethod[], o.answerTag);
      if (!found) return outcome(o, false, false);
      const got = normalizeAnswer(found.answer, o);
      if (got === '') return outcome(o, false, false);
      return outcome(o, true, refs.includes(got));
    },
  }),
});

// ---------------------------------------------------------------------------------------------
// math_equivalence

export const MathEquivalenceOptions = z.strictObject({
  /** Where the answer is in the completion, tried in order. */
  extract: z.array(extractMethod).min(1).default(['answer_tag', 'boxed', 'hash', 'answer_is', 'last_number']),
  /** Tag name for `answer_tag`. */
  answerTag: z.string().min(1).default('answer'),
  /** Relative tolerance when either side is not an exact rational (π, irrational roots). */
  relTol: z.number().nonnegative().max(0.5).default(1e-6),
  /** Absolute tolerance floor for such comparisons near zero. */
  absTol: z.number().nonnegative().default(1e-12),
  /** How `50%` compares with a plain number: `either` (50 or 0.5), `fraction` (0.5), `ignore` (50). */
  percent: z.enum(['either', 'fraction', 'ignore']).default('either'),
  /** Read `1,234` as one thousand two hundred thirty-four (else as the tuple (1, 234)). */
  thousandsSeparators: z.boolean().default(true),
  /** Read `2\frac{1}{2}` as the mixed number 5/2 (else as the product 2 · 1/2). */
  mixedNumbers: z.boolean().default(true),
  /** When either side cannot be parsed (symbolic answers), compare normalised strings instead; else a reference that cannot be parsed is an error. */
  stringFallback: z.boolean().default(true),
  ...outcomeRewards,
});
export type MathEquivalenceOptions = z.output<typeof MathEquivalenceOptions>;

/** The answer part of a reference: a GSM8K solution's `#### X`, a MATH solution's `\boxed{X}`, else all of it. */
export function referenceAnswer(reference: string): string {
  return extractHash(reference) ?? extractBoxed(reference) ?? reference.trim();
}

/** The string form symbolic answers are compared in when the parser cannot read them. */
export function mathString(text: string): string {
  let s: string;
  try {
    s = cleanMath(text);
  } catch {
    s = text;
  }
  return s
    .replace(/\s+/g, '')
    .replace(/^\{(.*)\}$/, '$1')
    .replace(/\.$/, '');
}

function tryParse(text: string, o: MathEquivalenceOptions): MathAnswer | MathParseError {
  try {
    return parseMath(text, o);
  } catch (e) {
    if (e instanceof MathParseError) return e;
    throw e;
  }
}

/** Whether `answer` and `reference` denote the same number (or tuple), under the options. */
export function mathEquivalent(answer: string, reference: string, o: MathEquivalenceOptions): boolean {
  const ref = tryParse(reference, o);
  if (ref instanceof MathParseError && !o.stringFallback) {
    throw new Error(
      `reference answer ${JSON.stringify(reference)} is not a number the math parser reads (${ref.message}); fix the data set or set stringFallback: true`,
    );
  }
  const got = tryParse(answer, o);
  if (!(ref instanceof MathParseError) && !(got instanceof MathParseError)) return answersEqual(got, ref, o);
  return o.stringFallback && mathString(answer) === mathString(reference);
}

export const mathEquivalence = defineReward({
  name: 'math_equivalence',
  description: 'final answer is mathematically equal to the reference (exact rationals, tolerance for irrationals)',
  source: 'RLVR answer checking as in DeepSeek-R1 / MATH (Hendrycks et al. 2021) / GSM8K (Cobbe et al. 2021)',
  optionsSchema: MathEquivalenceOptions,
  create: (o) => ({
    score(sample) {
      const refs = requireReference(sample, 'math_equivalence').map(referenceAnswer);
      const methods = o.extract as ExtractMethod[];
      const found = extractAnswer(sample.completion, methods, o.answerTag);
      if (!found) return outcome(o, false, false);
      let correct = refs.some((r) => mathEquivalent(found.answer, r, o));
      // "The answer is 42 apples": the phrase did not parse; its last number may.
      if (!correct && found.method === 'answer_is' && methods.includes('last_number')) {
        const inner = extractAnswer(found.answer, ['last_number']);
        if (inner && inner.answer !== found.answer) correct = refs.some((r) => mathEquivalent(inner.answer, r, o));
      }
      return outcome(o, true, correct);
    },
  }),
});

// ---------------------------------------------------------------------------------------------
// multiple_choice

export const MultipleChoiceOptions = z.strictObject({
  /** The option letters a completion may choose (upper case). `metadata.choices` (an array) narrows them to its length. */
  letters: z
    .string()
    .regex(/^[A-Z]+$/, 'upper-case letters only, e.g. "ABCD"')
    .default('ABCDEFGHIJ'),
  /** Tag name for `<answer>` extraction. */
  answerTag: z.string().min(1).default('answer'),
  ...outcomeRewards,
});
export type MultipleChoiceOptions = z.output<typeof MultipleChoiceOptions>;

export const multipleChoice = defineReward({
  name: 'multiple_choice',
  description: 'the chosen option letter equals the reference letter',
  source: 'multiple-choice QA (MMLU, GPQA) answer extraction',
  optionsSchema: MultipleChoiceOptions,
  create: (o) => ({
    score(sample) {
      const choices = sample.metadata?.choices;
      const letters = Array.isArray(choices) && choices.length > 0 ? o.letters.slice(0, choices.length) : o.letters;
      const refs = requireReference(sample, 'multiple_choice').map((r) => {
        const l = extractChoice(r, letters, o.answerTag) ?? (r.trim().length === 1 ? r.trim().toUpperCase() : undefined);
        if (l === undefined || !letters.includes(l)) {
          throw new Error(
            `reference ${JSON.stringify(r)} of sample ${sample.promptId}/${sample.sampleId} is not one of the letters ${letters}: fix the data set or the letters option`,
          );
        }
        return l;
      });
      const chosen = extractChoice(sample.completion, letters, o.answerTag);
      if (chosen === undefined) return outcome(o, false, false);
      return outcome(o, true, refs.includes(chosen));
    },
  }),
});
