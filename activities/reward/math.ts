/**
 * A small math-answer language: tokenizer + recursive-descent parser that evaluates an answer
 * string to an exact rational (or a float where exactness is impossible) or a tuple of them.
 *
 * Accepted: integers of any size, decimals, scientific notation (`1.5e3`), thousands separators
 * (`1,234,567` — a comma followed by exactly three digits), percentages (`50%`, `50\%`), unary
 * minus (also `−`), `+ - * / ^`, `\cdot`, `\times`, `\div`, `×`, `÷`, implicit multiplication
 * (`2\sqrt{3}`, `3(4)`, `2\pi`), parentheses `( ) [ ] { }` with `\left`/`\right`, `\frac{a}{b}`,
 * `\dfrac`, `\tfrac`, `\frac12`, mixed numbers (`2\frac{1}{2}` = 5/2), `\sqrt{x}`, `\sqrt[n]{x}`,
 * `√`, `\pi`/`π`, exponents `^{...}` or `^2` / `^-1` (a bare multi-digit exponent `2^10` is read as
 * plain text would: 1024), tuples and intervals `(1, 2)`, `[0, 1)`, `1, 2`. Decorations are dropped:
 * `$`, `\(`..`\)`, `\text{units}`, `\mathrm{}`, degree signs, `\$`, `\!`, `\,`, `\displaystyle`, a
 * leading `x =`, a trailing period.
 *
 * Grammar (lowest precedence first):
 *   list    := expr (',' expr)*
 *   expr    := term (('+' | '-') term)*
 *   term    := unary (('*' | '/') unary | <implicit> power)*
 *   unary   := ('-' | '+') unary | power
 *   power   := primary ('^' unary)?          right-associative through `unary`
 *   primary := NUMBER ['\frac' mixed] | '(' list ')' | '\frac' arg arg | '\sqrt' ['[' expr ']'] arg | '\pi'
 *   arg     := '{' list '}' | single digit | primary
 *
 * Anything else (letters, variables, unknown commands) is a parse error: callers fall back to a
 * normalised string comparison for symbolic answers.
 */
import { extractBoxed } from './extract.js';
import { add, approx, div, exact, mul, neg, parseDecimal, pow, rat, root, sub, valuesEqual, type MathValue } from './rational.js';

/**
 * A parsed answer: one number (with whether it carried a percent sign) or a tuple / interval with
 * its brackets (`()`, `[)`, ..., or '' for a bare list `1, 2`).
 */
export type MathAnswer = { kind: 'number'; value: MathValue; percent: boolean } | { kind: 'tuple'; items: MathValue[]; brackets: string };

export class MathParseError extends Error {
  override readonly name = 'MathParseError';
}

type Tok =
  | { t: 'num'; text: string }
  | { t: 'op'; v: '+' | '-' | '*' | '/' | '^' }
  | { t: 'open'; v: string }
  | { t: 'close'; v: string }
  | { t: 'comma' }
  | { t: 'percent' }
  | { t: 'frac' }
  | { t: 'sqrt' }
  | { t: 'pi' };

const SUPERSCRIPTS: Record<string, string> = {
  '⁰': '0',
  '¹': '1',
  '²': '2',
  '³': '3',
  '⁴': '4',
  '⁵': '5',
  '⁶': '6',
  '⁷': '7',
  '⁸': '8',
  '⁹': '9',
  '⁻': '-',
};

/** Text-level clean-up before tokenizing: math delimiters, spacing commands, units, unicode forms. */
export function cleanMath(input: string): string {
  let s = input;
  // Superscript digits become explicit exponents before NFKC would flatten them into plain digits.
  s = s.replace(/[⁰¹²³⁴⁵⁶⁷⁸⁹⁻]+/g, (m) => `^{${[...m].map((c) => SUPERSCRIPTS[c]).join('')}}`);
  s = s.normalize('NFKC');
  s = s
    .replace(/[\u2212\u2012\u2013\u2014]/g, '-') // minus sign and dashes
    .replace(/[×·⋅∙]/g, '*')
    .replace(/÷/g, '/')
    .replace(/\u2044/g, '/') // fraction slash (NFKC of ½)
    .replace(/π/g, '\\pi ')
    .replace(/√/g, '\\sqrt ');
  s = s.replace(/\\\$/g, '').replace(/\$/g, ''); // dollars and math delimiters
  s = s.replace(/\\[()[\]]/g, ' ');
  // Thin spaces and negative spaces sit inside numbers (`1\,000`): removed; wide spaces become spaces.
  s = s.replace(/\\[!,]/g, '').replace(/\{,\}/g, ',');
  s = s.replace(/\\(?:displaystyle|textstyle|;|:|quad|qquad| )/g, ' ').replace(/~/g, ' ');
  s = s.replace(/\\(?:left|right|bigl|bigr|Bigl|Bigr|big|Big)\s*(\\\{|\\\}|[.(){}[\]|])?/g, (_m, d: string | undefined) =>
    d === undefined || d === '.' ? ' ' : d === '\\{' ? '{' : d === '\\}' ? '}' : d,
  );
  // Degrees: ^\circ, ^{\circ}, °, \degree.
  s = s
    .replace(/\^\s*\{?\s*\\circ\s*\}?/g, ' ')
    .replace(/°/g, ' ')
    .replace(/\\degree/g, ' ');
  // \text{...}-like groups: unwrap what holds a number, drop unit words.
  s = s.replace(/\\(?:text|textbf|textit|textrm|mathrm|mathbf|mbox|operatorname)\s*\{([^{}]*)\}/g, (_m, inner: string) =>
    /\d/.test(inner) ? ` ${inner} ` : ' ',
  );
  s = s.replace(/\\[dtc]frac/g, '\\frac');
  return s.trim();
}

function isDigit(c: string | undefined): boolean {
  return c !== undefined && c >= '0' && c <= '9';
}

/** Tokenizes a cleaned math string. `thousands`: accept `1,234` as one number. */
export function tokenize(s: string, thousands: boolean): Tok[] {
  const out: Tok[] = [];
  let i = 0;
  while (i < s.length) {
    const c = s[i]!;
    if (c === ' ' || c === '\t' || c === '\n' || c === '\r') {
      i++;
    } else if (isDigit(c) || (c === '.' && isDigit(s[i + 1]))) {
      let j = i;
      while (isDigit(s[j])) j++;
      // Thousands groups: first group of 1-3 digits, then ",ddd" groups not followed by a digit.
      if (thousands && j - i <= 3) {
        while (s[j] === ',' && isDigit(s[j + 1]) && isDigit(s[j + 2]) && isDigit(s[j + 3]) && !isDigit(s[j + 4])) j += 4;
      }
      if (s[j] === '.' && isDigit(s[j + 1])) {
        j++;
        while (isDigit(s[j])) j++;
      }
      if ((s[j] === 'e' || s[j] === 'E') && (isDigit(s[j + 1]) || ((s[j + 1] === '-' || s[j + 1] === '+') && isDigit(s[j + 2])))) {
        j += 2;
        while (isDigit(s[j])) j++;
      }
      out.push({ t: 'num', text: s.slice(i, j).replace(/,/g, '') });
      i = j;
    } else if (c === '+' || c === '-' || c === '*' || c === '/' || c === '^') {
      out.push({ t: 'op', v: c });
      i++;
    } else if (c === '(' || c === '[' || c === '{') {
      out.push({ t: 'open', v: c });
      i++;
    } else if (c === ')' || c === ']' || c === '}') {
      out.push({ t: 'close', v: c });
      i++;
    } else if (c === ',') {
      out.push({ t: 'comma' });
      i++;
    } else if (c === '%') {
      out.push({ t: 'percent' });
      i++;
    } else if (c === '\\') {
      let j = i + 1;
      if (s[j] === '%') {
        out.push({ t: 'percent' });
        i = j + 1;
        continue;
      }
      while (j < s.length && /[a-zA-Z]/.test(s[j]!)) j++;
      const cmd = s.slice(i + 1, j);
      i = j;
      switch (cmd) {
        case 'frac':
          out.push({ t: 'frac' });
          break;
        case 'sqrt':
          out.push({ t: 'sqrt' });
          break;
        case 'pi':
          out.push({ t: 'pi' });
          break;
        case 'cdot':
        case 'times':
          out.push({ t: 'op', v: '*' });
          break;
        case 'div':
          out.push({ t: 'op', v: '/' });
          break;
        default:
          throw new MathParseError(`unsupported command \\${cmd || s[i] || ''}`);
      }
    } else {
      throw new MathParseError(`unexpected character ${JSON.stringify(c)} at ${i}`);
    }
  }
  return out;
}

const CLOSER: Record<string, string> = { '(': ')', '[': ']', '{': '}' };

class Parser {
  private pos = 0;
  constructor(
    private readonly toks: Tok[],
    private readonly mixedNumbers: boolean,
  ) {}

  private peek(): Tok | undefined {
    return this.toks[this.pos];
  }

  private next(): Tok {
    const t = this.toks[this.pos++];
    if (!t) throw new MathParseError('unexpected end of expression');
    return t;
  }

  private isOp(v: string): boolean {
    const t = this.peek();
    return t !== undefined && t.t === 'op' && t.v === v;
  }

  parseTop(): MathAnswer {
    if (this.toks.length === 0) throw new MathParseError('empty expression');
    let percent = false;
    if (this.toks[this.toks.length - 1]!.t === 'percent') {
      percent = true;
      this.toks.pop();
    }
    // A tuple or interval is a bracketed list spanning the whole answer: "(1, 2)", "[3, 4]".
    const first = this.toks[0]!;
    if (first.t === 'open' && first.v !== '{' && this.matching(0) === this.toks.length - 1) {
      this.pos = 1;
      const inner = this.list();
      const last = this.next();
      if (inner.length > 1 && last.t === 'close' && last.v !== '}') {
        if (percent) throw new MathParseError('a percent sign after a tuple');
        return { kind: 'tuple', items: inner, brackets: first.v + last.v };
      }
      this.pos = 0;
    }
    const items = this.list();
    if (this.pos !== this.toks.length) throw new MathParseError(`unexpected ${describe(this.peek()!)}`);
    if (items.length === 1) return { kind: 'number', value: items[0]!, percent };
    if (percent) throw new MathParseError('a percent sign after a tuple');
    return { kind: 'tuple', items, brackets: '' };
  }

  /** Index of the bracket closing the one at `open`, or -1. */
  private matching(open: number): number {
    let depth = 0;
    for (let i = open; i < this.toks.length; i++) {
      const t = this.toks[i]!;
      if (t.t === 'open') depth++;
      else if (t.t === 'close' && --depth === 0) return i;
    }
    return -1;
  }

  private list(): MathValue[] {
    const items = [this.expr()];
    while (this.peek()?.t === 'comma') {
      this.pos++;
      items.push(this.expr());
    }
    return items;
  }

  private expr(): MathValue {
    let v = this.term();
    while (this.isOp('+') || this.isOp('-')) {
      const op = (this.next() as { v: string }).v;
      const r = this.term();
      v = op === '+' ? add(v, r) : sub(v, r);
    }
    return v;
  }

  private startsPrimary(t: Tok | undefined): boolean {
    return t !== undefined && (t.t === 'num' || t.t === 'open' || t.t === 'frac' || t.t === 'sqrt' || t.t === 'pi');
  }

  private term(): MathValue {
    let v = this.unary();
    while (true) {
      if (this.isOp('*') || this.isOp('/')) {
        const op = (this.next() as { v: string }).v;
        const r = this.unary();
        v = op === '*' ? mul(v, r) : div(v, r);
      } else if (this.startsPrimary(this.peek())) {
        if (this.peek()!.t === 'num' && this.toks[this.pos - 1]?.t === 'num') {
          throw new MathParseError('two numbers side by side');
        }
        v = mul(v, this.power());
      } else {
        return v;
      }
    }
  }

  private unary(): MathValue {
    if (this.isOp('-')) {
      this.pos++;
      return neg(this.unary());
    }
    if (this.isOp('+')) {
      this.pos++;
      return this.unary();
    }
    return this.power();
  }

  private power(): MathValue {
    const base = this.primary();
    if (this.isOp('^')) {
      this.pos++;
      return pow(base, this.unary());
    }
    return base;
  }

  /** A LaTeX macro argument: a braced group, a single digit of a number, or a primary. */
  private arg(): MathValue {
    const t = this.peek();
    if (t?.t === 'open' && t.v === '{') {
      this.pos++;
      const items = this.list();
      if (items.length !== 1) throw new MathParseError('a tuple inside a macro argument');
      this.expectClose('{');
      return items[0]!;
    }
    if (t?.t === 'num' && /^\d\d/.test(t.text)) {
      // `\frac12`: a bare argument is one digit; the rest stays in the stream.
      this.toks[this.pos] = { t: 'num', text: t.text.slice(1) };
      return exact(rat(BigInt(t.text[0]!)));
    }
    return this.primary();
  }

  private expectClose(open: string): void {
    const t = this.next();
    if (t.t !== 'close' || t.v !== CLOSER[open]) throw new MathParseError(`expected ${CLOSER[open]} but found ${describe(t)}`);
  }

  private primary(): MathValue {
    const t = this.next();
    switch (t.t) {
      case 'num': {
        const v = exact(parseDecimal(t.text));
        // Mixed number: an integer literal right before \frac{int}{int}.
        if (this.mixedNumbers && /^\d+$/.test(t.text) && this.peek()?.t === 'frac') {
          const save = this.pos;
          const snapshot = this.toks.slice();
          this.pos++;
          const fracStart = this.pos;
          const a = this.arg();
          const b = this.arg();
          const literalInts = this.toks
            .slice(fracStart, this.pos)
            .every((x) => (x.t === 'num' ? /^\d+$/.test(x.text) : x.t === 'open' || x.t === 'close'));
          if (literalInts) return add(v, div(a, b));
          this.toks.splice(0, this.toks.length, ...snapshot);
          this.pos = save;
        }
        return v;
      }
      case 'open': {
        const items = this.list();
        this.expectClose(t.v);
        if (items.length !== 1) throw new MathParseError('a tuple inside an expression');
        return items[0]!;
      }
      case 'frac': {
        const a = this.arg();
        const b = this.arg();
        return div(a, b);
      }
      case 'sqrt': {
        let k = 2;
        const o = this.peek();
        if (o?.t === 'open' && o.v === '[') {
          this.pos++;
          const idx = this.expr();
          this.expectClose('[');
          if (!idx.exact || idx.q.d !== 1n || idx.q.n < 1n || idx.q.n > 64n)
            throw new MathParseError('root index must be an integer from 1 to 64');
          k = Number(idx.q.n);
        }
        return root(this.arg(), k);
      }
      case 'pi':
        return approx(Math.PI);
      default:
        throw new MathParseError(`unexpected ${describe(t)}`);
    }
  }
}

function describe(t: Tok): string {
  switch (t.t) {
    case 'num':
      return `number ${t.text}`;
    case 'op':
    case 'open':
    case 'close':
      return `"${t.v}"`;
    case 'comma':
      return '","';
    case 'percent':
      return '"%"';
    default:
      return `\\${t.t}`;
  }
}

export interface MathParseOptions {
  /** Accept `1,234` as a thousands-separated number (else it is the tuple (1, 234)). */
  thousandsSeparators: boolean;
  /** Read `2\frac{1}{2}` as the mixed number 5/2 (else as 2 · 1/2). */
  mixedNumbers: boolean;
}

const DEFAULT_PARSE: MathParseOptions = { thousandsSeparators: true, mixedNumbers: true };

/** Drops a leading `x =` / `y \approx` style left-hand side and a trailing full stop. */
function stripAround(s: string): string {
  let t = s.trim();
  const eq = t.search(/(?:=|\\approx|\\equiv)(?![^]*(?:=|\\approx|\\equiv))/);
  if (eq >= 0) {
    const lhs = t.slice(0, eq).trim();
    // Only a simple left side (a variable or a short word) is dropped: "x = 5", "k=3".
    if (/^[a-zA-Z](?:_\{?\w+\}?)?$/.test(lhs) || /^\\?[a-zA-Z]+$/.test(lhs))
      t = t
        .slice(eq)
        .replace(/^(?:=|\\approx|\\equiv)/, '')
        .trim();
  }
  return t.replace(/[.。]+$/, '').trim();
}

/** Parses a math answer; throws MathParseError saying what could not be read. */
export function parseMath(text: string, opts: Partial<MathParseOptions> = {}): MathAnswer {
  const o = { ...DEFAULT_PARSE, ...opts };
  const boxed = /\\(?:boxed|fbox)\b/.test(text) ? extractBoxed(text) : undefined;
  const cleaned = stripAround(cleanMath(boxed ?? text));
  const p = new Parser(tokenize(cleaned, o.thousandsSeparators), o.mixedNumbers);
  try {
    const a = p.parseTop();
    const values = a.kind === 'number' ? [a.value] : a.items;
    for (const v of values) {
      if (!v.exact && !Number.isFinite(v.x)) throw new MathParseError(`the answer is too large to compare (${v.x})`);
    }
    return a;
  } catch (e) {
    if (e instanceof MathParseError) throw e;
    // Arithmetic errors (division by zero, even root of a negative) are parse failures of the answer.
    throw new MathParseError(e instanceof Error ? e.message : String(e));
  }
}

export interface MathCompareOptions {
  /** Relative tolerance for comparisons that involve a non-exact value (π, irrational roots). */
  relTol: number;
  /** Absolute tolerance floor for such comparisons (values near zero). */
  absTol: number;
  /** How `50%` compares with a plain number: `either` (50 or 0.5), `fraction` (0.5 only), `ignore` (50 only). */
  percent: 'either' | 'fraction' | 'ignore';
}

const HUNDRED = exact(rat(100n));

/** Equality of two parsed answers. */
export function answersEqual(a: MathAnswer, b: MathAnswer, o: MathCompareOptions): boolean {
  if (a.kind === 'tuple' || b.kind === 'tuple') {
    if (a.kind !== 'tuple' || b.kind !== 'tuple' || a.items.length !== b.items.length) return false;
    // Open and closed interval ends differ; a bare list matches any brackets.
    if (a.brackets !== '' && b.brackets !== '' && a.brackets !== b.brackets) return false;
    return a.items.every((x, i) => valuesEqual(x, b.items[i]!, o.relTol, o.absTol));
  }
  const eq = (x: MathValue, y: MathValue) => valuesEqual(x, y, o.relTol, o.absTol);
  if (a.percent === b.percent) return eq(a.value, b.value);
  // Exactly one side carries a percent sign.
  const [p, plain] = a.percent ? [a.value, b.value] : [b.value, a.value];
  const asFraction = div(p, HUNDRED);
  switch (o.percent) {
    case 'fraction':
      return eq(asFraction, plain);
    case 'ignore':
      return eq(p, plain);
    default:
      return eq(p, plain) || eq(asFraction, plain);
  }
}
