/**
 * GSM8K-style arithmetic word problems (Cobbe et al. 2021, "Training Verifiers to Solve Math Word
 * Problems"), generated from templates: the offline example dataset of `durable-rl make-dataset
 * gsm8k-style` (docs/configs/gsm8k-style.yaml trains on it). Each problem takes two steps of
 * whole-number arithmetic (+, −, ×) with small numbers (one factor of a product at most 9, the
 * other at most 5; sums and differences of numbers up to 20), so a model trained from scratch on
 * characters can learn some of it on a CPU; the answer is a whole number from 0 to 44.
 *
 * Row r of seed s is a pure function of (s, r): template, names and numbers are drawn from
 * `CounterRng(s, 'gsm8k-style', r)`, so a file regenerates byte for byte and `--rows 2000` begins
 * with the rows of `--rows 1000`.
 *
 * Columns, as the run config's `data` reads them:
 * - `question`: the problem (GSM8K's column name, for `template: "{question} …"`);
 * - `prompt`: the question followed by `INSTRUCTION` (the default `promptColumn`);
 * - `completion`: a worked solution, one equation per step, then `<answer>N</answer>` (what an sft
 *   phase trains on);
 * - `answer`: N, the reference `math_equivalence` compares with (GSM8K's own `answer` column, a
 *   solution ending in `#### N`, works in its place: the reward reads the number after `####`).
 */
import { CounterRng } from '../common/rng.js';

/** Appended to each question in the `prompt` column: how the answer must be written. */
export const INSTRUCTION = 'Give the final answer in <answer></answer> tags.';

/** One generated problem (see the file comment for the columns). */
export interface WordProblem {
  question: string;
  prompt: string;
  completion: string;
  answer: string;
}

interface Person {
  name: string;
  /** Subject pronoun. */
  he: string;
}

const PEOPLE: readonly Person[] = [
  { name: 'Tom', he: 'he' },
  { name: 'Ana', he: 'she' },
  { name: 'Sam', he: 'he' },
  { name: 'Lily', he: 'she' },
  { name: 'Omar', he: 'he' },
  { name: 'Mia', he: 'she' },
  { name: 'Ben', he: 'he' },
  { name: 'Zoe', he: 'she' },
];
const ITEMS: readonly string[] = ['apples', 'pencils', 'marbles', 'stickers', 'cookies', 'stamps'];

/** Draws of one row: `int(lo, hi)` an integer in [lo, hi], `pick(list)` an element, each at the next position of the row's stream. */
interface Draw {
  int(lo: number, hi: number): number;
  pick<T>(list: readonly T[]): T;
}

/** A template: the question and the solution's steps (each `a op b = c`) for its draws. */
type Template = (d: Draw, a: Person, b: Person, items: string) => { question: string; steps: [number, string, number, number][] };

const cap = (s: string) => s[0]!.toUpperCase() + s.slice(1);

const TEMPLATES: readonly Template[] = [
  (d, a, b, items) => {
    const x = d.int(2, 9);
    const y = d.int(2, 9);
    const z = d.int(1, x + y);
    return {
      question: `${a.name} has ${x} ${items}. ${cap(a.he)} buys ${y} more and gives ${z} to ${b.name}. How many ${items} does ${a.name} have now?`,
      steps: [
        [x, '+', y, x + y],
        [x + y, '-', z, x + y - z],
      ],
    };
  },
  (d, a, _b, items) => {
    const x = d.int(2, 9);
    const y = d.int(2, 5);
    const z = d.int(1, x * y);
    return {
      question: `A box holds ${x} ${items}. ${a.name} fills ${y} boxes and then uses ${z} of the ${items}. How many ${items} are left?`,
      steps: [
        [x, '*', y, x * y],
        [x * y, '-', z, x * y - z],
      ],
    };
  },
  (d, a, _b) => {
    const x = d.int(2, 9);
    const y = d.int(2, 5);
    const z = x * y + d.int(1, 9);
    return {
      question: `${a.name} reads ${x} pages a day for ${y} days. The book has ${z} pages. How many pages are left to read?`,
      steps: [
        [x, '*', y, x * y],
        [z, '-', x * y, z - x * y],
      ],
    };
  },
  (d, a, _b) => {
    const x = d.int(2, 9);
    const y = d.int(2, 5);
    const z = d.int(1, x * y);
    return {
      question: `${a.name} earns ${x} dollars an hour and works ${y} hours. ${cap(a.he)} spends ${z} dollars on lunch. How many dollars does ${a.he} have left?`,
      steps: [
        [x, '*', y, x * y],
        [x * y, '-', z, x * y - z],
      ],
    };
  },
  (d) => {
    const x = d.int(2, 9);
    const y = d.int(2, 5);
    const z = d.int(1, x * y);
    return {
      question: `A hall has ${x} rows of ${y} chairs. ${z} chairs are taken. How many chairs are free?`,
      steps: [
        [x, '*', y, x * y],
        [x * y, '-', z, x * y - z],
      ],
    };
  },
  (d, a, b, items) => {
    const x = d.int(2, 9);
    const y = d.int(2, 3);
    return {
      question: `${a.name} has ${x} ${items} and ${b.name} has ${y} times as many. How many ${items} do they have together?`,
      steps: [
        [x, '*', y, x * y],
        [x, '+', x * y, x + x * y],
      ],
    };
  },
  (d, a, _b, items) => {
    const x = d.int(2, 9);
    const y = d.int(2, 5);
    const z = x * y + d.int(0, 9);
    return {
      question: `A shop sells ${items} at ${x} dollars each. ${a.name} buys ${y} of them and pays with ${z} dollars. How much change does ${a.he} get?`,
      steps: [
        [x, '*', y, x * y],
        [z, '-', x * y, z - x * y],
      ],
    };
  },
  (d, a, b, items) => {
    const x = d.int(5, 20);
    const y = d.int(1, x);
    const z = d.int(2, 9);
    return {
      question: `${a.name} had ${x} ${items} and lost ${y} of them. Then ${b.name} gave ${a.name} ${z} ${items}. How many ${items} does ${a.name} have?`,
      steps: [
        [x, '-', y, x - y],
        [x - y, '+', z, x - y + z],
      ],
    };
  },
];

/** Row `row` of the seed's problems (see the file comment). */
export function wordProblem(seed: number, row: number): WordProblem {
  const rng = new CounterRng(seed, 'gsm8k-style', row);
  let at = 0;
  const d: Draw = {
    int: (lo, hi) => lo + rng.int(at++, hi - lo + 1),
    pick: (list) => list[rng.int(at++, list.length)]!,
  };
  const template = d.pick(TEMPLATES);
  const a = d.pick(PEOPLE);
  const b = d.pick(PEOPLE.filter((p) => p !== a));
  const { question, steps } = template(d, a, b, d.pick(ITEMS));
  const answer = String(steps.at(-1)![3]);
  const work = steps.map(([x, op, y, z]) => `${x} ${op} ${y} = ${z}.`).join(' ');
  return { question, prompt: `${question} ${INSTRUCTION}`, completion: `${work} <answer>${answer}</answer>`, answer };
}

/** Rows 0..rows-1 of the seed's problems as JSONL: one JSON object per line, columns in the order question, prompt, completion, answer. */
export function wordProblemsJsonl(seed: number, rows: number): string {
  if (!Number.isSafeInteger(seed)) throw new RangeError(`seed must be an integer, got ${seed}`);
  if (!Number.isSafeInteger(rows) || rows < 1) throw new RangeError(`rows must be a positive integer, got ${rows}`);
  return Array.from({ length: rows }, (_, r) => JSON.stringify(wordProblem(seed, r)) + '\n').join('');
}
