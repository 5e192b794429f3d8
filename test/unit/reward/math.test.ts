import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseMath, answersEqual, MathParseError, type MathAnswer } from '../../../activities/reward/math.js';
import { formatValue, toNumber, rat, exactRoot } from '../../../activities/reward/rational.js';

const cmp = { relTol: 1e-6, absTol: 1e-12, percent: 'either' as const };

function show(a: MathAnswer): string {
  return a.kind === 'number' ? formatValue(a.value) + (a.percent ? '%' : '') : `${a.brackets}:${a.items.map(formatValue).join(',')}`;
}
const val = (s: string) => show(parseMath(s));

test('integers, decimals and signs parse to exact rationals', () => {
  assert.equal(val('42'), '42');
  assert.equal(val('-3'), '-3');
  assert.equal(val('−7'), '-7'); // unicode minus
  assert.equal(val('3.50'), '7/2');
  assert.equal(val('.25'), '1/4');
  assert.equal(val('0.1'), '1/10');
  assert.equal(val('1.5e3'), '1500');
  assert.equal(val('2.5E-2'), '1/40');
});

test('thousands separators are one number; other commas make a tuple', () => {
  assert.equal(val('1,234,567'), '1234567');
  assert.equal(val('1,234.5'), '2469/2');
  assert.equal(val('1\\,000'), '1000');
  assert.equal(val('1{,}000'), '1000');
  assert.equal(val('12,34'), ':12,34');
  assert.equal(show(parseMath('1,234', { thousandsSeparators: false })), ':1,234');
});

test('LaTeX fractions, roots, powers and products', () => {
  assert.equal(val('\\frac{1}{2}'), '1/2');
  assert.equal(val('\\dfrac{3}{4}'), '3/4');
  assert.equal(val('\\tfrac{-6}{8}'), '-3/4');
  assert.equal(val('\\frac12'), '1/2');
  assert.equal(val('\\frac{1+2}{3\\cdot 4}'), '1/4');
  assert.equal(val('\\sqrt{16}'), '4');
  assert.equal(val('\\sqrt{\\frac{9}{4}}'), '3/2');
  assert.equal(val('\\sqrt[3]{-27}'), '-3');
  assert.equal(val('2^{10}'), '1024');
  assert.equal(val('2^10'), '1024');
  assert.equal(val('2^-2'), '1/4');
  assert.equal(val('-2^2'), '-4');
  assert.equal(val('2^3^2'), '512'); // right-associative
  assert.equal(val('3 \\times 4 \\div 6'), '2');
  assert.equal(val('2(3+4)'), '14');
  assert.equal(val('\\left( \\frac{1}{2} \\right)^2'), '1/4');
  assert.equal(val('4/6'), '2/3');
  assert.equal(val('8^{2/3}'), '4');
});

test('mixed numbers are sums unless disabled', () => {
  assert.equal(val('2\\frac{1}{2}'), '5/2');
  assert.equal(val('-2\\frac12'), '-5/2');
  assert.equal(show(parseMath('2\\frac{1}{2}', { mixedNumbers: false })), '1');
});

test('irrational values are floats', () => {
  const a = parseMath('2\\sqrt{3}');
  assert.ok(a.kind === 'number' && !a.value.exact);
  assert.ok(a.kind === 'number' && !a.value.exact && Math.abs(a.value.x - 2 * Math.sqrt(3)) < 1e-12);
  const p = parseMath('\\frac{\\pi}{2}');
  assert.ok(p.kind === 'number' && !p.value.exact && Math.abs(p.value.x - Math.PI / 2) < 1e-15);
  assert.ok(answersEqual(parseMath('π'), parseMath('\\pi'), cmp));
});

test('decorations are dropped: $, \\text units, degrees, dollars, x =, trailing period, \\boxed', () => {
  assert.equal(val('$\\boxed{5}$'), '5');
  assert.equal(val('10 \\text{ cm}'), '10');
  assert.equal(val('90^\\circ'), '90');
  assert.equal(val('90°'), '90');
  assert.equal(val('\\$1,000.50'), '2001/2');
  assert.equal(val('x = 5'), '5');
  assert.equal(val('k=\\frac{3}{2}'), '3/2');
  assert.equal(val('17.'), '17');
  assert.equal(val('\\(\\frac{2}{3}\\)'), '2/3');
  assert.equal(val('x²'.replace('x', '3')), '9');
  assert.equal(val('½'), '1/2');
});

test('percentages carry a flag and compare either way by default', () => {
  assert.equal(val('50\\%'), '50%');
  assert.equal(val('12.5%'), '25/2%');
  assert.ok(answersEqual(parseMath('50%'), parseMath('50'), cmp));
  assert.ok(answersEqual(parseMath('50%'), parseMath('0.5'), cmp));
  assert.ok(!answersEqual(parseMath('50%'), parseMath('0.5'), { ...cmp, percent: 'ignore' }));
  assert.ok(!answersEqual(parseMath('50%'), parseMath('50'), { ...cmp, percent: 'fraction' }));
  assert.ok(!answersEqual(parseMath('50%'), parseMath('5'), cmp));
});

test('tuples and intervals: same items and same brackets', () => {
  assert.equal(val('(1, 2)'), '():1,2');
  assert.equal(val('[0, 1)'), '[):0,1');
  assert.ok(answersEqual(parseMath('(1, \\frac{1}{2})'), parseMath('(1, 0.5)'), cmp));
  assert.ok(!answersEqual(parseMath('(1, 2)'), parseMath('[1, 2]'), cmp));
  assert.ok(answersEqual(parseMath('1, 2'), parseMath('(1, 2)'), cmp));
  assert.ok(!answersEqual(parseMath('(1, 2)'), parseMath('(2, 1)'), cmp));
  assert.ok(!answersEqual(parseMath('(1, 2)'), parseMath('3'), cmp));
});

test('huge numbers stay exact', () => {
  assert.equal(val('123456789012345678901234567890'), '123456789012345678901234567890');
  assert.ok(answersEqual(parseMath('10^{30}'), parseMath('1000000000000000000000000000000'), cmp));
  // Differ in the last digit: exact comparison sees it where a float would not.
  assert.ok(!answersEqual(parseMath('10^{30}+1'), parseMath('10^{30}'), cmp));
  assert.ok(answersEqual(parseMath('2^{1000}'), parseMath('2^{500} \\cdot 2^{500}'), cmp));
  assert.equal(toNumber(rat(10n ** 400n, 10n ** 398n)), 100);
  assert.equal(exactRoot(10n ** 60n, 3), 10n ** 20n);
});

test('exact versus float uses the relative tolerance', () => {
  assert.ok(answersEqual(parseMath('1.41421356'), parseMath('\\sqrt{2}'), cmp));
  assert.ok(!answersEqual(parseMath('1.414'), parseMath('\\sqrt{2}'), cmp));
  assert.ok(answersEqual(parseMath('1.414'), parseMath('\\sqrt{2}'), { ...cmp, relTol: 1e-3 }));
  assert.ok(answersEqual(parseMath('\\frac{\\sqrt{3}}{2}'), parseMath('\\frac{3}{2\\sqrt{3}}'), cmp));
  // Exact rationals never use the tolerance.
  assert.ok(!answersEqual(parseMath('0.3333333'), parseMath('\\frac{1}{3}'), { ...cmp, relTol: 1e-3 }));
});

test('unreadable input is a MathParseError naming the problem', () => {
  for (const [s, re] of [
    ['x^2+1', /unexpected character "x"/],
    ['', /empty/],
    ['\\frac{1}{0}', /division by zero/],
    ['\\sqrt{-4}', /not real/],
    ['2 3', /two numbers side by side/],
    ['(1, 2', /expected \)|end of expression/],
    ['\\int_0^1', /unsupported command \\int/],
    ['2^{100000}', /too large/],
  ] as const) {
    assert.throws(
      () => parseMath(s),
      (e: unknown) => e instanceof MathParseError && re.test(e.message),
      s,
    );
  }
});
