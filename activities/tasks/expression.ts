/**
 * Integer arithmetic expressions with + - * / and parentheses, as Countdown answers are written:
 * a tokenizer, a recursive-descent parser to a tree, exact rational evaluation (BigInt, never
 * `eval()`), and a printer that writes a tree back with the fewest parentheses that keep its shape.
 *
 * Grammar (whitespace between tokens is ignored):
 *
 *     expr   := term (('+' | '-') term)*
 *     term   := factor (('*' | '/') factor)*
 *     factor := INTEGER | '(' expr ')'
 *
 * `×` and `·` are read as `*`, `÷` as `/`, the Unicode minus `−` as `-`. There is no unary minus and
 * no decimal point: a Countdown answer combines the given whole numbers, and `-3` or `2.5` is not
 * one of them. Evaluation checks, node by node, that no division is by zero and that every
 * intermediate result obeys the rule in force (`rational`, `integer` or `natural`).
 */
import { rat, type Rational } from '../reward/rational.js';

export type Op = '+' | '-' | '*' | '/';
export const OPS: readonly Op[] = ['+', '-', '*', '/'];

/** A parsed expression. `pos` is the character offset of the node's first token in the source. */
export type Expr = { kind: 'num'; value: bigint; pos: number } | { kind: 'bin'; op: Op; left: Expr; right: Expr; pos: number };

/** Text that is not an expression of the grammar above; `position` is a character offset. */
export class ExpressionSyntaxError extends Error {
  override readonly name = 'ExpressionSyntaxError';
  constructor(
    message: string,
    readonly position: number,
  ) {
    super(`${message} at position ${position}`);
  }
}

/** Limits that keep hostile input (model output is arbitrary text) cheap to reject. */
export interface ParseLimits {
  /** Longest text accepted, in characters (default 2000). */
  maxLength?: number;
  /** Deepest parenthesis nesting accepted (default 64); deeper input would only exhaust the stack. */
  maxDepth?: number;
  /** Longest integer literal accepted, in digits (default 30). */
  maxDigits?: number;
}

type Token =
  { t: 'num'; value: bigint; pos: number } | { t: 'op'; op: Op; pos: number } | { t: '(' | ')'; pos: number } | { t: 'end'; pos: number };

const OP_ALIASES: Record<string, Op> = { '+': '+', '-': '-', '−': '-', '*': '*', '×': '*', '·': '*', '/': '/', '÷': '/' };

function tokenize(text: string, maxDigits: number): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (/\s/.test(c)) {
      i++;
    } else if (c >= '0' && c <= '9') {
      let j = i;
      while (j < text.length && text[j]! >= '0' && text[j]! <= '9') j++;
      if (j - i > maxDigits) throw new ExpressionSyntaxError(`number with ${j - i} digits is longer than the ${maxDigits} allowed`, i);
      if (text[j] === '.' || text[j] === ',')
        throw new ExpressionSyntaxError(`only whole numbers are allowed, found ${JSON.stringify(text.slice(i, j + 2))}`, i);
      out.push({ t: 'num', value: BigInt(text.slice(i, j)), pos: i });
      i = j;
    } else if (c in OP_ALIASES) {
      out.push({ t: 'op', op: OP_ALIASES[c]!, pos: i });
      i++;
    } else if (c === '(' || c === ')') {
      out.push({ t: c, pos: i });
      i++;
    } else {
      throw new ExpressionSyntaxError(`unexpected character ${JSON.stringify(c)}`, i);
    }
  }
  out.push({ t: 'end', pos: text.length });
  return out;
}

/** Parses an expression; throws `ExpressionSyntaxError` saying where and why it is not one. */
export function parseExpression(text: string, limits: ParseLimits = {}): Expr {
  const maxLength = limits.maxLength ?? 2000;
  const maxDepth = limits.maxDepth ?? 64;
  if (text.length > maxLength)
    throw new ExpressionSyntaxError(`text of ${text.length} characters is longer than the ${maxLength} allowed`, 0);
  const toks = tokenize(text, limits.maxDigits ?? 30);
  let k = 0;
  const peek = () => toks[k]!;
  const describe = (t: Token) =>
    t.t === 'end'
      ? 'end of text'
      : t.t === 'num'
        ? `number ${t.value}`
        : t.t === 'op'
          ? `operator ${JSON.stringify(t.op)}`
          : JSON.stringify(t.t);

  function expr(depth: number): Expr {
    let left = term(depth);
    for (let t = peek(); t.t === 'op' && (t.op === '+' || t.op === '-'); t = peek()) {
      k++;
      left = { kind: 'bin', op: t.op, left, right: term(depth), pos: left.pos };
    }
    return left;
  }
  function term(depth: number): Expr {
    let left = factor(depth);
    for (let t = peek(); t.t === 'op' && (t.op === '*' || t.op === '/'); t = peek()) {
      k++;
      left = { kind: 'bin', op: t.op, left, right: factor(depth), pos: left.pos };
    }
    return left;
  }
  function factor(depth: number): Expr {
    const t = peek();
    if (t.t === 'num') {
      k++;
      return { kind: 'num', value: t.value, pos: t.pos };
    }
    if (t.t === '(') {
      if (depth >= maxDepth) throw new ExpressionSyntaxError(`parentheses nested deeper than ${maxDepth}`, t.pos);
      k++;
      const inner = expr(depth + 1);
      const close = peek();
      if (close.t !== ')')
        throw new ExpressionSyntaxError(`expected ")" to close the "(" at position ${t.pos}, found ${describe(close)}`, close.pos);
      k++;
      return { ...inner, pos: t.pos };
    }
    if (t.t === 'op' && t.op === '-')
      throw new ExpressionSyntaxError('unary minus is not allowed (only the given numbers may appear)', t.pos);
    throw new ExpressionSyntaxError(`expected a number or "(", found ${describe(t)}`, t.pos);
  }

  const e = expr(0);
  const rest = peek();
  if (rest.t !== 'end') throw new ExpressionSyntaxError(`unexpected ${describe(rest)} after a complete expression`, rest.pos);
  return e;
}

/** The integer literals of an expression, left to right. */
export function literals(e: Expr, out: bigint[] = []): bigint[] {
  if (e.kind === 'num') out.push(e.value);
  else {
    literals(e.left, out);
    literals(e.right, out);
  }
  return out;
}

/** The operators of an expression, left to right. */
export function operators(e: Expr, out: Op[] = []): Op[] {
  if (e.kind === 'bin') {
    operators(e.left, out);
    out.push(e.op);
    operators(e.right, out);
  }
  return out;
}

/**
 * Which intermediate results are allowed: any rational (`rational`, as TinyZero's Countdown, which
 * evaluates the answer as Python), whole numbers only (`integer`: every division exact), or
 * positive whole numbers only (`natural`: the rules of the television game).
 */
export type IntermediateRule = 'rational' | 'integer' | 'natural';

/** Whether a value is allowed as an intermediate (or final) result under a rule. */
export function allowedUnder(q: Rational, rule: IntermediateRule): boolean {
  if (rule === 'rational') return true;
  if (q.d !== 1n) return false;
  return rule === 'integer' || q.n > 0n;
}

// Exact rational arithmetic on reduced BigInt fractions (denominator positive).
export const addQ = (a: Rational, b: Rational): Rational => rat(a.n * b.d + b.n * a.d, a.d * b.d);
export const subQ = (a: Rational, b: Rational): Rational => rat(a.n * b.d - b.n * a.d, a.d * b.d);
export const mulQ = (a: Rational, b: Rational): Rational => rat(a.n * b.n, a.d * b.d);
/** `a / b`; the caller checks `b.n !== 0n`. */
export const divQ = (a: Rational, b: Rational): Rational => rat(a.n * b.d, a.d * b.n);

export function applyOp(op: Op, a: Rational, b: Rational): Rational {
  switch (op) {
    case '+':
      return addQ(a, b);
    case '-':
      return subQ(a, b);
    case '*':
      return mulQ(a, b);
    case '/':
      return divQ(a, b);
  }
}

export type Evaluation = { ok: true; value: Rational } | { ok: false; reason: 'division_by_zero' | 'intermediate'; message: string };

/**
 * Evaluates an expression exactly. Fails (as data, not an exception) on a division by zero, or on
 * an intermediate result the rule forbids; the first such node in evaluation order is named.
 */
export function evaluate(e: Expr, rule: IntermediateRule = 'rational'): Evaluation {
  if (e.kind === 'num') {
    const value = rat(e.value);
    if (!allowedUnder(value, rule))
      return { ok: false, reason: 'intermediate', message: `number ${e.value} at position ${e.pos} is not allowed under the ${rule} rule` };
    return { ok: true, value };
  }
  const l = evaluate(e.left, rule);
  if (!l.ok) return l;
  const r = evaluate(e.right, rule);
  if (!r.ok) return r;
  if (e.op === '/' && r.value.n === 0n) {
    return {
      ok: false,
      reason: 'division_by_zero',
      message: `division by zero: ${printExpression(e.right)} is 0 (position ${e.right.pos})`,
    };
  }
  const value = applyOp(e.op, l.value, r.value);
  if (!allowedUnder(value, rule)) {
    return {
      ok: false,
      reason: 'intermediate',
      message: `${printExpression(e)} = ${formatRational(value)} is not ${rule === 'integer' ? 'a whole number' : 'a positive whole number'} (${rule} rule)`,
    };
  }
  return { ok: true, value };
}

export function formatRational(q: Rational): string {
  return q.d === 1n ? String(q.n) : `${q.n}/${q.d}`;
}

const PREC: Record<Op, number> = { '+': 1, '-': 1, '*': 2, '/': 2 };

/**
 * Writes an expression with the fewest parentheses that keep its tree: a child is wrapped when it
 * binds less tightly than its parent, and a right child of equal precedence is wrapped too (so
 * `a-(b-c)`, `a/(b*c)` and `a+(b+c)` print as such and parse back to the same tree). `spaced`
 * puts one space around each operator.
 */
export function printExpression(e: Expr, spaced = false): string {
  if (e.kind === 'num') return String(e.value);
  const p = PREC[e.op];
  const wrap = (c: Expr, right: boolean) => {
    const s = printExpression(c, spaced);
    if (c.kind === 'num') return s;
    const cp = PREC[c.op];
    return cp < p || (right && cp === p) ? `(${s})` : s;
  };
  const sep = spaced ? ` ${e.op} ` : e.op;
  return `${wrap(e.left, false)}${sep}${wrap(e.right, true)}`;
}
