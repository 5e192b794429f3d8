/**
 * The sample input of the reward-annotation demo (`durable-rl make-sample` and `demo`, and the
 * annotation tests): "What is 4821 + 377?" → "5198" problems and the completions of a simulated
 * solver that writes its answers in many formats. Pure functions of the seed (counter-based RNG).
 * The streams and formats are fixed: the recorded annotateRewards history replays against them.
 */
import { CounterRng } from '../common/rng.js';

export interface AdditionProblem {
  promptId: string;
  prompt: string;
  /** The exact answer, as digits. */
  answer: string;
  a: number;
  b: number;
}

export interface AdditionOptions {
  /** Digits of each operand, at least 1 (default 4). */
  digits?: number;
  /** Prefix of prompt ids (default `add`). */
  idPrefix?: string;
}

export function additionProblems(seed: number, count: number, opts: AdditionOptions = {}): AdditionProblem[] {
  const digits = opts.digits ?? 4;
  if (!Number.isInteger(digits) || digits < 1 || digits > 15) throw new RangeError(`digits must be an integer in [1, 15], got ${digits}`);
  if (!Number.isInteger(count) || count < 0) throw new RangeError(`count must be a non-negative integer, got ${count}`);
  const max = 10 ** digits;
  const out: AdditionProblem[] = [];
  for (let i = 0; i < count; i++) {
    const rng = new CounterRng(seed, 'addition', i);
    const a = rng.int(0, max);
    const b = rng.int(1, max);
    out.push({
      promptId: `${opts.idPrefix ?? 'add'}-${String(i).padStart(6, '0')}`,
      prompt: `What is ${a} + ${b}?`,
      answer: String(a + b),
      a,
      b,
    });
  }
  return out;
}

/**
 * Completions of a simulated solver that is right with probability `accuracy`, written in one of
 * several formats models use; wrong answers are off in one digit. For demos and tests of rewards.
 */
export function noisyCompletions(problems: AdditionProblem[], seed: number, accuracy = 0.7): string[] {
  return problems.map((p, i) => {
    const rng = new CounterRng(seed, 'noisy-solver', i);
    const right = rng.uniform(0) < accuracy;
    let value = p.a + p.b;
    if (!right) {
      const place = 10 ** rng.int(1, String(value).length);
      value += (rng.uniform(2) < 0.5 ? -1 : 1) * place * (1 + rng.int(3, 8));
    }
    const s = String(value);
    switch (rng.int(4, 5)) {
      case 0:
        return `${p.a} + ${p.b} = ${s}. The answer is ${s}.`;
      case 1:
        return `Adding column by column gives \\boxed{${s}}`;
      case 2:
        return `Let me compute.\n#### ${s}`;
      case 3:
        return `It is ${value.toLocaleString('en-US')}`;
      default:
        return s;
    }
  });
}
