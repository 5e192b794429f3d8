/**
 * Numbers for answer checking: exact rationals (BigInt numerator/denominator, always reduced, the
 * denominator positive) where the arithmetic allows it, float64 approximations where it does not
 * (irrational roots, π, huge powers). Used by `math.ts`.
 */

export interface Rational {
  readonly n: bigint;
  readonly d: bigint;
}

/** A value: exact when every step of its computation was exact. */
export type MathValue = { exact: true; q: Rational } | { exact: false; x: number };

/**
 * Beyond this many bits (about 10^39000) a numerator or denominator is turned into a float, which
 * guards against answers like 10^10^10 exhausting memory.
 */
export const MAX_EXACT_BITS = 1 << 17;

/** Largest decimal exponent a literal may carry (`1e10000`). */
export const MAX_DECIMAL_EXPONENT = 10_000;

const abs = (a: bigint) => (a < 0n ? -a : a);

export function gcd(a: bigint, b: bigint): bigint {
  a = abs(a);
  b = abs(b);
  while (b !== 0n) [a, b] = [b, a % b];
  return a;
}

export function rat(n: bigint, d: bigint = 1n): Rational {
  if (d === 0n) throw new Error('division by zero');
  if (d < 0n) {
    n = -n;
    d = -d;
  }
  const g = gcd(n, d);
  return g > 1n ? { n: n / g, d: d / g } : { n, d };
}

export const exact = (q: Rational): MathValue => ({ exact: true, q });
export const approx = (x: number): MathValue => ({ exact: false, x });

function bitLength(a: bigint): number {
  return abs(a).toString(2).length;
}

/** A rational as the nearest-ish float64 (correct to ~1 ulp even for huge numerators/denominators). */
export function toNumber(q: Rational): number {
  const nb = bitLength(q.n);
  const db = bitLength(q.d);
  if (nb <= 53 && db <= 53) return Number(q.n) / Number(q.d);
  // Scale so the integer quotient carries 64 significant bits, then undo the scaling in floating point.
  const shift = 64 - (nb - db);
  const scaled = shift >= 0 ? (q.n << BigInt(shift)) / q.d : q.n / (q.d << BigInt(-shift));
  return Number(scaled) * Math.pow(2, -shift);
}

export function valueToNumber(v: MathValue): number {
  return v.exact ? toNumber(v.q) : v.x;
}

/** Exact when small enough, else the float. */
function bounded(q: Rational): MathValue {
  if (bitLength(q.n) > MAX_EXACT_BITS || bitLength(q.d) > MAX_EXACT_BITS) return approx(toNumber(q));
  return exact(q);
}

export function add(a: MathValue, b: MathValue): MathValue {
  if (a.exact && b.exact) return bounded(rat(a.q.n * b.q.d + b.q.n * a.q.d, a.q.d * b.q.d));
  return approx(valueToNumber(a) + valueToNumber(b));
}

export function neg(a: MathValue): MathValue {
  return a.exact ? exact({ n: -a.q.n, d: a.q.d }) : approx(-a.x);
}

export function sub(a: MathValue, b: MathValue): MathValue {
  return add(a, neg(b));
}

export function mul(a: MathValue, b: MathValue): MathValue {
  if (a.exact && b.exact) return bounded(rat(a.q.n * b.q.n, a.q.d * b.q.d));
  return approx(valueToNumber(a) * valueToNumber(b));
}

export function div(a: MathValue, b: MathValue): MathValue {
  if (b.exact ? b.q.n === 0n : b.x === 0) throw new Error('division by zero');
  if (a.exact && b.exact) return bounded(rat(a.q.n * b.q.d, a.q.d * b.q.n));
  return approx(valueToNumber(a) / valueToNumber(b));
}

/** Integer k-th root of a non-negative BigInt if it is exact, else undefined. */
export function exactRoot(a: bigint, k: number): bigint | undefined {
  if (a < 0n) return undefined;
  if (a < 2n) return a;
  const K = BigInt(k);
  // Newton's method from an upper bound.
  let x = 1n << BigInt(Math.ceil(bitLength(a) / k) + 1);
  while (true) {
    const y = ((K - 1n) * x + a / x ** (K - 1n)) / K;
    if (y >= x) break;
    x = y;
  }
  return x ** K === a ? x : undefined;
}

/** k-th root: exact when numerator and denominator are perfect powers, else a float. */
export function root(a: MathValue, k: number): MathValue {
  if (!Number.isInteger(k) || k < 1) throw new Error(`root index must be a positive integer, got ${k}`);
  if (a.exact) {
    const neg = a.q.n < 0n;
    if (neg && k % 2 === 0) throw new Error('even root of a negative number is not real');
    const n = exactRoot(abs(a.q.n), k);
    const d = exactRoot(a.q.d, k);
    if (n !== undefined && d !== undefined) return exact(rat(neg ? -n : n, d));
  }
  const x = valueToNumber(a);
  if (x < 0 && k % 2 === 0) throw new Error('even root of a negative number is not real');
  return approx(x < 0 ? -Math.pow(-x, 1 / k) : Math.pow(x, 1 / k));
}

/** a^b: exact for rational a and integer b (within size bounds) or perfect-power rational b. */
export function pow(a: MathValue, b: MathValue): MathValue {
  if (a.exact && b.exact) {
    if (b.q.d === 1n) {
      const e = b.q.n;
      if (e === 0n) return exact(rat(1n));
      const eAbs = abs(e);
      const bits = Math.max(bitLength(a.q.n), bitLength(a.q.d));
      if (bits * Number(eAbs) <= MAX_EXACT_BITS) {
        const n = a.q.n ** eAbs;
        const d = a.q.d ** eAbs;
        return e > 0n ? exact(rat(n, d)) : div(exact(rat(1n)), exact(rat(n, d)));
      }
    } else if (b.q.d <= 64n) {
      // a^(p/q) = (q-th root of a)^p, exact when the root is.
      const r = root(a, Number(b.q.d));
      if (r.exact) return pow(r, exact(rat(b.q.n)));
    }
  }
  const x = valueToNumber(a);
  const y = valueToNumber(b);
  const z = Math.pow(x, y);
  if (Number.isNaN(z)) throw new Error(`${x}^${y} is not a real number`);
  return approx(z);
}

/**
 * Equality: exact rationals compare exactly; otherwise |a - b| <= max(relTol * max(|a|, |b|), absTol).
 */
export function valuesEqual(a: MathValue, b: MathValue, relTol: number, absTol: number): boolean {
  if (a.exact && b.exact) return a.q.n === b.q.n && a.q.d === b.q.d;
  const x = valueToNumber(a);
  const y = valueToNumber(b);
  if (!Number.isFinite(x) || !Number.isFinite(y)) return x === y;
  return Math.abs(x - y) <= Math.max(relTol * Math.max(Math.abs(x), Math.abs(y)), absTol);
}

/** Parses an unsigned decimal literal ("12", "3.50", ".5", "1.2e-3") into an exact rational. */
export function parseDecimal(text: string): Rational {
  const m = /^(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/.exec(text);
  if (!m || (m[1] === '' && (m[2] ?? '') === '')) throw new Error(`not a number: ${JSON.stringify(text)}`);
  const intPart = m[1] ?? '';
  const frac = m[2] ?? '';
  const exp = m[3] ? Number(m[3]) : 0;
  if (!Number.isSafeInteger(exp) || Math.abs(exp) > MAX_DECIMAL_EXPONENT) throw new Error(`exponent too large in ${JSON.stringify(text)}`);
  let n = BigInt(intPart + frac || '0');
  let d = 10n ** BigInt(frac.length);
  if (exp > 0) n *= 10n ** BigInt(exp);
  else if (exp < 0) d *= 10n ** BigInt(-exp);
  return rat(n, d);
}

export function formatValue(v: MathValue): string {
  if (!v.exact) return String(v.x);
  return v.q.d === 1n ? v.q.n.toString() : `${v.q.n}/${v.q.d}`;
}
