/**
 * The `calculator` environment: multi-digit multiplication that a small model cannot do in its head
 * but can with a `calc` tool, mixed with one-digit products it can (where a call is needless, and
 * the efficiency term of the reward says so).
 *
 *   tagged:  123*45=  →  <c>123*45</c> <o>5535</o> <a>5535</a>      (observation: loss mask 0)
 *            7*8=     →  <a>56</a>
 *   hermes:  "What is 123*45? …"  →  <tool_call>{"name": "calc", …}</tool_call> … <answer>5535</answer>
 *
 * Splits: a multi-digit problem is in train or eval by a hash of its unordered factors, never both;
 * the one-digit products (the multiplication table, 45 unordered pairs) are drawn in both splits, as
 * what a model is meant to know without a tool: held-out one-digit pairs could not be learnt at all.
 *
 * `calc` evaluates +, -, *, / and parentheses over whole numbers exactly (the tasks' recursive
 * descent parser and BigInt rationals, activities/tasks/expression.ts; never `eval`).
 */
import { z } from '../common/config.js';
import { evaluate, ExpressionSyntaxError, formatRational, parseExpression } from '../tasks/expression.js';
import type { Draws } from '../tasks/split.js';
import { builtinEnvironment, builtinOptions, goldTrajectory } from './builtin.js';
import { defineEnvironmentKind, type EnvRow, type Tool, type ToolCallFormat } from './types.js';

export const CalculatorOptions = z
  .strictObject({
    /** Fewest digits of each factor of a tool problem. */
    minDigits: z.number().int().min(1).max(6).default(2),
    /** Most digits of the first factor. */
    maxDigitsA: z.number().int().min(1).max(6).default(3),
    /** Most digits of the second factor. */
    maxDigitsB: z.number().int().min(1).max(6).default(2),
    /** Fraction of problems with two one-digit factors, answered without a call (a call there is needless). */
    easyFraction: z.number().min(0).max(1).default(0.2),
    /** Longest expression `calc` accepts, in characters. */
    maxExpressionChars: z.number().int().positive().default(64),
    ...builtinOptions,
  })
  .refine((o) => o.minDigits <= Math.min(o.maxDigitsA, o.maxDigitsB), {
    message: 'minDigits must not exceed maxDigitsA or maxDigitsB',
    path: ['minDigits'],
  });
export type CalculatorOptions = z.output<typeof CalculatorOptions>;

/** The `calc` tool: an exact evaluation, or an error text saying where the expression is wrong. */
export function calcTool(maxChars: number): Tool {
  return {
    spec: {
      name: 'calc',
      description: 'Evaluates an arithmetic expression over whole numbers (+ - * / and parentheses) exactly.',
      parameters: {
        type: 'object',
        properties: { expression: { type: 'string', description: 'e.g. 123*45' } },
        required: ['expression'],
        additionalProperties: false,
      },
    },
    tag: 'c',
    timeoutMs: 1000,
    run(args) {
      const text = String(args.expression);
      try {
        const r = evaluate(parseExpression(text, { maxLength: maxChars, maxDepth: 16, maxDigits: 30 }));
        return r.ok ? formatRational(r.value) : `error: ${r.message}`;
      } catch (err) {
        if (err instanceof ExpressionSyntaxError) return `error: ${err.message}`;
        throw err;
      }
    },
  };
}

function prompt(format: ToolCallFormat, a: number, b: number): string {
  return format === 'tagged'
    ? `${a}*${b}=`
    : `What is ${a}*${b}? Use the calc tool when the numbers are large; give the result in <answer></answer>.`;
}

export const calculator = defineEnvironmentKind({
  name: 'calculator',
  description: 'multi-digit multiplication with a calc tool (one-digit products answered directly)',
  optionsSchema: CalculatorOptions,
  create(o) {
    const calc = calcTool(o.maxExpressionChars);
    const tools = [calc];
    const factor = (d: Draws, digits: number) => d.intIn(10 ** (digits - 1), 10 ** digits - 1);
    const longestProduct = o.maxDigitsA + o.maxDigitsB;
    const maxPromptChars = prompt(o.format, 10 ** o.maxDigitsA - 1, 10 ** o.maxDigitsB - 1).length;
    const gold = (row: EnvRow) => {
      const { a, b } = row.metadata as { a: number; b: number };
      const product = String(a * b);
      return (row.metadata.goldCalls as number) === 0
        ? goldTrajectory(o.format, tools, [], product)
        : goldTrajectory(
            o.format,
            tools,
            [{ call: { name: 'calc', arguments: { expression: `${a}*${b}` } }, observation: product }],
            product,
          );
    };
    // the longest gold episode: a call with the widest factors, its observation and the answer
    const widest = goldTrajectory(
      o.format,
      tools,
      [
        {
          call: { name: 'calc', arguments: { expression: `${'9'.repeat(o.maxDigitsA)}*${'9'.repeat(o.maxDigitsB)}` } },
          observation: '9'.repeat(longestProduct),
        },
      ],
      '9'.repeat(longestProduct),
    );
    return builtinEnvironment(o, {
      name: 'calculator',
      tools,
      system: 'You are a careful calculator. Products of numbers with two or more digits need the calc tool.',
      maxPromptChars,
      longestGold: widest,
      gold,
      hint: 'Widen the digit ranges or move evalFraction away from 0/1.',
      candidate(d) {
        const easy = d.uniform() < o.easyFraction;
        const a = easy ? d.intIn(1, 9) : factor(d, d.intIn(o.minDigits, o.maxDigitsA));
        const b = easy ? d.intIn(1, 9) : factor(d, d.intIn(o.minDigits, o.maxDigitsB));
        const goldCalls = easy ? 0 : 1;
        return {
          // a multi-digit problem is in one split only; the one-digit table is knowledge to hold in one's head, drawn in both splits
          key: easy ? `table:${a}*${b}#${d.intIn(0, 2 ** 30)}` : a <= b ? `${a}*${b}` : `${b}*${a}`,
          item: {
            prompt: prompt(o.format, a, b),
            reference: String(a * b),
            metadata: {
              env: 'calculator',
              a,
              b,
              goldCalls,
              toolCalls: easy ? [] : [{ name: 'calc', arguments: { expression: `${a}*${b}` } }],
            },
          },
        };
      },
    });
  },
});
