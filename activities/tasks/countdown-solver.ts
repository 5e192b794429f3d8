/**
 * Countdown puzzles as pure functions: the rules, an exhaustive solver over exact rationals, the
 * checker of an answer against an instance, and the seeded generator of solvable instances.
 *
 * An instance is a few whole numbers and a target; an answer is an expression over + - * / and
 * parentheses that uses the numbers (each exactly once, or at most once) and evaluates to the target.
 */
import { rat, type Rational } from '../reward/rational.js';
import {
  allowedUnder,
  applyOp,
  evaluate,
  ExpressionSyntaxError,
  literals,
  operators,
  parseExpression,
  printExpression,
  type Expr,
  type IntermediateRule,
  type Op,
} from './expression.js';
import type { Draws } from './split.js';

/** What a valid answer may do. */
export interface CountdownRules {
  /** Each given number used `exactly_once` (TinyZero's rule) or `at_most_once` (the television game's). */
  numberUse: 'exactly_once' | 'at_most_once';
  /** Which intermediate results are allowed (see `IntermediateRule`). */
  intermediates: IntermediateRule;
  /** The operators an answer may use. */
  operators: readonly Op[];
}

export interface CountdownInstance {
  numbers: number[];
  target: number;
}

interface Item {
  q: Rational;
  e: Expr;
}

function combine(op: Op, a: Item, b: Item, rule: IntermediateRule): Item | null {
  if (op === '/' && b.q.n === 0n) return null;
  const q = applyOp(op, a.q, b.q);
  if (!allowedUnder(q, rule)) return null;
  return { q, e: { kind: 'bin', op, left: a.e, right: b.e, pos: 0 } };
}

/** All ways to combine the pair (a, b): both orders for the operators that are not commutative. */
function* pairResults(a: Item, b: Item, rules: CountdownRules): Generator<Item> {
  for (const op of rules.operators) {
    const r = combine(op, a, b, rules.intermediates);
    if (r) yield r;
    if (op === '-' || op === '/') {
      const s = combine(op, b, a, rules.intermediates);
      if (s) yield s;
    }
  }
}

/**
 * Depth-first search combining two items at a time until one is left; the result takes the first
 * item's place. `best` is null: stop at the first solution. Otherwise every solution is visited and
 * the one printing shortest (fewest parentheses) is kept in `best.e`, the first found on ties.
 */
function search(items: Item[], target: bigint, rules: CountdownRules, best: { e: Expr | null; len: number } | null): Expr | null {
  if (items.length === 1) {
    const { q, e } = items[0]!;
    if (q.d !== 1n || q.n !== target) return null;
    if (best) {
      const len = printExpression(e).length;
      if (len < best.len) Object.assign(best, { e, len });
      return null;
    }
    return e;
  }
  for (let i = 0; i < items.length; i++) {
    for (let j = i + 1; j < items.length; j++) {
      for (const r of pairResults(items[i]!, items[j]!, rules)) {
        const next = items.filter((_, k) => k !== j);
        next[i] = r;
        const found = search(next, target, rules, best);
        if (found) return found;
      }
    }
  }
  return null;
}

/** `search` as a whole: the first solution, or the shortest. */
function solve(items: Item[], target: bigint, rules: CountdownRules, prefer: 'first' | 'shortest'): Expr | null {
  if (prefer === 'first') return search(items, target, rules, null);
  const best = { e: null as Expr | null, len: Infinity };
  search(items, target, rules, best);
  return best.e;
}

/** Index subsets of {0..n-1} of size k, in lexicographic order. */
function* subsets(n: number, k: number, start = 0, acc: number[] = []): Generator<number[]> {
  if (acc.length === k) {
    yield [...acc];
    return;
  }
  for (let i = start; i <= n - (k - acc.length); i++) {
    acc.push(i);
    yield* subsets(n, k, i + 1, acc);
    acc.pop();
  }
}

/**
 * A solution of an instance, or null when there is none. Exhaustive: every pairing order, every
 * allowed operator in both orders, exact rationals throughout. Under `at_most_once` the smallest
 * subset of the numbers that reaches the target is used. The search order is fixed, so the same
 * instance always gets the same solution (operators tried in `rules.operators` order, numbers in
 * the given order; chains come out left-nested: `a+b+c`, not `a+(b+c)`).
 *
 * `prefer`: `first` returns the first solution of the search (fast); `shortest` visits every
 * solution and returns the one that prints shortest, i.e. with the fewest parentheses (first found on
 * ties) — more uniform gold answers for supervised warm-up, at the cost of a full search (about a
 * millisecond for four numbers, a few hundred for five).
 */
export function solveCountdown(inst: CountdownInstance, rules: CountdownRules, prefer: 'first' | 'shortest' = 'first'): Expr | null {
  const leaves: Item[] = inst.numbers.map((n) => ({ q: rat(BigInt(n)), e: { kind: 'num', value: BigInt(n), pos: 0 } }));
  const target = BigInt(inst.target);
  if (leaves.some((l) => !allowedUnder(l.q, rules.intermediates))) return null;
  if (rules.numberUse === 'exactly_once') return solve(leaves, target, rules, prefer);
  for (let k = 1; k <= leaves.length; k++) {
    const seen = new Set<string>();
    for (const idx of subsets(leaves.length, k)) {
      const key = idx.map((i) => inst.numbers[i]).join(',');
      if (seen.has(key)) continue; // the same numbers at other positions: same answers
      seen.add(key);
      const found = solve(
        idx.map((i) => leaves[i]!),
        target,
        rules,
        prefer,
      );
      if (found) return found;
    }
  }
  return null;
}

/** Why an answer fails, in the order the checks run; `correct` when it does not. */
export type CountdownVerdict = 'correct' | 'unparseable' | 'numbers' | 'operator' | 'division_by_zero' | 'intermediate' | 'value';

export interface CountdownCheck {
  verdict: CountdownVerdict;
  /** What was wrong, in words (empty when correct). */
  message: string;
  /** The expression's exact value, when it could be computed. */
  value?: Rational;
}

/**
 * Checks an expression text against an instance: parse (`unparseable`), then number usage
 * (`numbers`: a number not given, or used more often than given, or — under `exactly_once` — one
 * left out), then operators (`operator`), then evaluation (`division_by_zero`, `intermediate`),
 * then the value (`value`). Never throws on bad text: bad model output is data.
 */
export function checkCountdown(text: string, inst: CountdownInstance, rules: CountdownRules): CountdownCheck {
  let e: Expr;
  try {
    e = parseExpression(text);
  } catch (err) {
    if (err instanceof ExpressionSyntaxError) return { verdict: 'unparseable', message: err.message };
    throw err;
  }
  const available = new Map<string, number>();
  for (const n of inst.numbers) available.set(String(n), (available.get(String(n)) ?? 0) + 1);
  for (const lit of literals(e)) {
    const s = String(lit);
    const left = available.get(s) ?? 0;
    if (left === 0) {
      const given = inst.numbers.includes(Number(s));
      return {
        verdict: 'numbers',
        message: given ? `${s} is used more often than it is given` : `${s} is not one of the given numbers ${inst.numbers.join(', ')}`,
      };
    }
    available.set(s, left - 1);
  }
  if (rules.numberUse === 'exactly_once') {
    const unused = [...available].flatMap(([n, c]) => Array<string>(c).fill(n));
    if (unused.length > 0) return { verdict: 'numbers', message: `every number must be used exactly once; unused: ${unused.join(', ')}` };
  }
  const bad = operators(e).find((op) => !rules.operators.includes(op));
  if (bad) return { verdict: 'operator', message: `operator ${bad} is not allowed (allowed: ${rules.operators.join(' ')})` };
  const v = evaluate(e, rules.intermediates);
  if (!v.ok) return { verdict: v.reason, message: v.message };
  if (v.value.d !== 1n || v.value.n !== BigInt(inst.target)) {
    const shown = v.value.d === 1n ? String(v.value.n) : `${v.value.n}/${v.value.d}`;
    return { verdict: 'value', message: `the expression equals ${shown}, not ${inst.target}`, value: v.value };
  }
  return { verdict: 'correct', message: '', value: v.value };
}

/** Ranges of a generated instance. */
export interface CountdownShape {
  minNumbers: number;
  maxNumbers: number;
  minNumber: number;
  maxNumber: number;
  minTarget: number;
  maxTarget: number;
}

/**
 * One attempt at a solvable instance: draw the numbers, then build the target by combining two
 * random items with a random allowed operator until one item is left (TinyZero's construction:
 * the target is the value of a random expression over all the numbers, so a solution exists by
 * construction). Returns null when the attempt fails (a division by zero or an intermediate the
 * rule forbids in every try, a target that is not a whole number or is out of range, or — under
 * `at_most_once` — a target equal to one of the numbers, which would be trivial).
 */
export function randomCountdown(d: Draws, shape: CountdownShape, rules: CountdownRules): (CountdownInstance & { expr: Expr }) | null {
  const n = d.intIn(shape.minNumbers, shape.maxNumbers);
  const numbers = Array.from({ length: n }, () => d.intIn(shape.minNumber, shape.maxNumber));
  let items: Item[] = numbers.map((x) => ({ q: rat(BigInt(x)), e: { kind: 'num', value: BigInt(x), pos: 0 } }));
  if (items.some((l) => !allowedUnder(l.q, rules.intermediates))) return null;
  while (items.length > 1) {
    const i = d.intIn(0, items.length - 1);
    let j = d.intIn(0, items.length - 2);
    if (j >= i) j++;
    let made: Item | null = null;
    for (let tries = 0; tries < 8 && !made; tries++) made = combine(d.pick(rules.operators), items[i]!, items[j]!, rules.intermediates);
    if (!made) return null;
    items = items.filter((_, k) => k !== i && k !== j);
    items.push(made);
  }
  const { q, e } = items[0]!;
  if (q.d !== 1n || q.n < BigInt(shape.minTarget) || q.n > BigInt(shape.maxTarget)) return null;
  const target = Number(q.n);
  if (rules.numberUse === 'at_most_once' && numbers.includes(target)) return null;
  return { numbers, target, expr: e };
}
