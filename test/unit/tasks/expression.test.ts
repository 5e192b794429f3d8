import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  evaluate,
  ExpressionSyntaxError,
  formatRational,
  literals,
  parseExpression,
  printExpression,
  type Expr,
} from '../../../activities/tasks/expression.js';
import { randomCountdown } from '../../../activities/tasks/countdown-solver.js';
import { Draws } from '../../../activities/tasks/split.js';
import { CounterRng } from '../../../activities/common/rng.js';

/** The value of an expression text as "n" or "n/d", or the failure reason. */
function value(text: string, rule: 'rational' | 'integer' | 'natural' = 'rational'): string {
  const v = evaluate(parseExpression(text), rule);
  return v.ok ? formatRational(v.value) : v.reason;
}

/** Tree shape without positions. */
function shape(e: Expr): unknown {
  return e.kind === 'num' ? String(e.value) : [e.op, shape(e.left), shape(e.right)];
}

test('precedence and associativity follow arithmetic', () => {
  assert.equal(value('2+3*4'), '14');
  assert.equal(value('(2+3)*4'), '20');
  assert.equal(value('10-4-3'), '3'); // left-associative: (10-4)-3
  assert.equal(value('10-(4-3)'), '9');
  assert.equal(value('64/8/2'), '4'); // (64/8)/2
  assert.equal(value('64/(8/2)'), '16');
  assert.equal(value('100 - 25 * 3 + 7'), '32');
  assert.equal(value('((((7))))'), '7');
  assert.deepEqual(shape(parseExpression('1+2*3-4')), ['-', ['+', '1', ['*', '2', '3']], '4']);
});

test('evaluation is exact over rationals', () => {
  assert.equal(value('1/3+1/3+1/3'), '1');
  assert.equal(value('7/3'), '7/3');
  assert.equal(value('(7-3/4)*4'), '25');
  assert.equal(value('3-8'), '-5');
  // 0.1 + 0.2 style float error cannot happen: 1/10 + 2/10 is exactly 3/10
  assert.equal(value('1/10+2/10'), '3/10');
  assert.equal(value('99999999999999999999*99999999999999999999'), '9999999999999999999800000000000000000001');
});

test('whitespace and operator spellings', () => {
  assert.equal(value(' ( 50 - 25 ) \u00d7 4 \u00f7 2 '), '50');
  assert.equal(value('6\u00b77\u22122'), '40');
});

test('division by zero is reported as data, naming the zero divisor', () => {
  const v = evaluate(parseExpression('5/(3-3)'));
  assert.equal(v.ok, false);
  assert.ok(!v.ok && v.reason === 'division_by_zero' && /3-3 is 0/.test(v.message), JSON.stringify(v));
  assert.equal(value('0/5'), '0');
});

test('intermediate rules: rational allows fractions, integer forbids them, natural also forbids zero and negatives', () => {
  assert.equal(value('(7-3/4)*4', 'rational'), '25');
  assert.equal(value('(7-3/4)*4', 'integer'), 'intermediate');
  assert.equal(value('8/4*3', 'integer'), '6');
  assert.equal(value('3-8+10', 'integer'), '5');
  assert.equal(value('3-8+10', 'natural'), 'intermediate');
  assert.equal(value('10-8+3', 'natural'), '5');
  assert.equal(value('5-5+1', 'natural'), 'intermediate'); // 5-5 = 0 is not positive
  const v = evaluate(parseExpression('(7-3/4)*4'), 'integer');
  assert.ok(!v.ok && /3\/4 = 3\/4 is not a whole number/.test(v.message), JSON.stringify(v));
});

test('syntax errors say what and where', () => {
  const cases: [string, RegExp][] = [
    ['', /expected a number or "\(", found end of text at position 0/],
    ['3+', /expected a number or "\(", found end of text at position 2/],
    ['-3+5', /unary minus is not allowed .* at position 0/],
    ['3*-5', /unary minus is not allowed .* at position 2/],
    ['2.5*4', /only whole numbers are allowed, found "2\.5" at position 0/],
    ['(3+4', /expected "\)" to close the "\(" at position 0, found end of text at position 4/],
    ['3+4)', /unexpected "\)" after a complete expression at position 3/],
    ['3 4', /unexpected number 4 after a complete expression at position 2/],
    ['x=3+4', /unexpected character "x" at position 0/],
    ['The answer is 7', /unexpected character "T" at position 0/],
    ['3^2', /unexpected character "\^" at position 1/],
    ['()', /expected a number or "\(", found "\)" at position 1/],
  ];
  for (const [text, re] of cases) {
    assert.throws(
      () => parseExpression(text),
      (e: unknown) => e instanceof ExpressionSyntaxError && re.test(e.message),
      text,
    );
  }
});

test('hostile input is rejected cheaply: length, nesting depth, literal size', () => {
  assert.throws(() => parseExpression('1+'.repeat(5000) + '1'), /longer than the 2000 allowed/);
  assert.throws(() => parseExpression('('.repeat(100) + '1' + ')'.repeat(100)), /nested deeper than 64/);
  assert.throws(() => parseExpression('9'.repeat(31)), /31 digits is longer than the 30 allowed/);
  assert.equal(value('('.repeat(60) + '1' + ')'.repeat(60)), '1');
});

test('literals are listed left to right', () => {
  assert.deepEqual(literals(parseExpression('(25-3)*4+25')), [25n, 3n, 4n, 25n]);
});

test('printing keeps the tree: parse(print(e)) has the shape of e, with minimal parentheses', () => {
  assert.equal(printExpression(parseExpression('((2+3))*4')), '(2+3)*4');
  assert.equal(printExpression(parseExpression('(2*3)+4')), '2*3+4');
  assert.equal(printExpression(parseExpression('(10-4)-3')), '10-4-3');
  assert.equal(printExpression(parseExpression('10-(4-3)')), '10-(4-3)');
  assert.equal(printExpression(parseExpression('10-(4+3)')), '10-(4+3)');
  assert.equal(printExpression(parseExpression('64/(8*2)')), '64/(8*2)');
  assert.equal(printExpression(parseExpression('(2+3)*4'), true), '(2 + 3) * 4');
  // random trees over up to five numbers: the printed text parses back to the same tree
  const shapeOpts = { minNumbers: 2, maxNumbers: 5, minNumber: 0, maxNumber: 20, minTarget: -1e9, maxTarget: 1e9 };
  let checked = 0;
  for (let i = 0; i < 400; i++) {
    const inst = randomCountdown(new Draws(new CounterRng(5, 'print', i), 0), shapeOpts, {
      numberUse: 'exactly_once',
      intermediates: 'integer',
      operators: ['+', '-', '*', '/'],
    });
    if (!inst) continue;
    const text = printExpression(inst.expr);
    assert.deepEqual(shape(parseExpression(text)), shape(inst.expr), text);
    assert.equal(value(text, 'integer'), String(inst.target), text);
    checked++;
  }
  assert.ok(checked > 100, `only ${checked} random trees were made`);
});
