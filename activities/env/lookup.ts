/**
 * The `lookup` environment: two-hop questions over a small table shipped with the project
 * (`countries.tsv`: country, capital, currency code), answered with a `lookup` tool.
 *
 *   tagged:  capital of currency SEK?
 *            →  <l>SEK|country</l> <o>Sweden</o> <l>Sweden|capital</l> <o>Stockholm</o> <a>Stockholm</a>
 *            currency of capital Oslo?
 *            →  <l>Oslo|country</l> <o>Norway</o> <l>Norway|currency</l> <o>NOK</o> <a>NOK</a>
 *
 * The model need not know any fact: it copies the entity into the first call, the first
 * observation into the second, the second observation into the answer. Held-out questions ask
 * about (kind, entity) pairs never trained on.
 */
import { readFileSync } from 'node:fs';
import { z } from '../common/config.js';
import { builtinEnvironment, builtinOptions, goldTrajectory, trajectoryChars } from './builtin.js';
import { defineEnvironmentKind, type EnvRow, type Tool, type ToolCall, type ToolCallFormat } from './types.js';

/** One row of the table. */
export interface CountryRow {
  country: string;
  capital: string;
  currency: string;
}

let table: CountryRow[] | undefined;

/** The shipped table (`countries.tsv`, read once): every capital and currency names one country. */
export function countryTable(): CountryRow[] {
  table ??= readFileSync(new URL('./countries.tsv', import.meta.url), 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '' && !l.startsWith('#'))
    .slice(1) // the header
    .map((l, i) => {
      const [country, capital, currency, ...rest] = l.split('\t');
      if (!country || !capital || !currency || rest.length > 0)
        throw new Error(`countries.tsv row ${i + 1} is not country<TAB>capital<TAB>currency: ${JSON.stringify(l)}`);
      return { country, capital, currency };
    });
  return table;
}

export const RELATIONS = ['country', 'capital', 'currency'] as const;
type Relation = (typeof RELATIONS)[number];

const same = (a: string, b: string) => a.trim().toLowerCase() === b.trim().toLowerCase();

/** What the `lookup` tool answers: the country of a capital or currency, or a country's capital or currency; an error text otherwise. */
export function lookupFact(rows: readonly CountryRow[], entity: string, relation: Relation): string {
  if (relation === 'country') {
    const row = rows.find((r) => same(r.capital, entity) || same(r.currency, entity));
    return row ? row.country : `error: no country has the capital or currency "${entity}"`;
  }
  const row = rows.find((r) => same(r.country, entity));
  return row ? row[relation] : `error: "${entity}" is not a country of the table`;
}

/** The `lookup` tool over a table. */
export function lookupTool(rows: readonly CountryRow[]): Tool {
  return {
    spec: {
      name: 'lookup',
      description:
        'One fact of the country table: the country of a capital or currency code, or the capital or currency code of a country.',
      parameters: {
        type: 'object',
        properties: {
          entity: { type: 'string', description: 'a country, a capital or a currency code, e.g. SEK' },
          relation: { type: 'string', enum: [...RELATIONS], description: 'the fact wanted about the entity' },
        },
        required: ['entity', 'relation'],
        additionalProperties: false,
      },
    },
    tag: 'l',
    timeoutMs: 1000,
    run: (args) => lookupFact(rows, String(args.entity), args.relation as Relation),
  };
}

type Kind = 'capital' | 'currency';

/** The question: the wanted relation of the country known by the other one. */
function prompt(format: ToolCallFormat, kind: Kind, entity: string): string {
  const by = kind === 'capital' ? 'currency' : 'capital';
  return format === 'tagged'
    ? `${kind} of ${by} ${entity}?`
    : `What is the ${kind} of the country whose ${by} is ${entity}? Use the lookup tool; give the result in <answer></answer>.`;
}

export const LookupOptions = z.strictObject({
  /** Question kinds drawn: the capital of the country of a currency, the currency of the country of a capital. */
  kinds: z
    .array(z.enum(['capital', 'currency']))
    .min(1)
    .default(['capital', 'currency']),
  ...builtinOptions,
  /** Fraction of (kind, entity) questions held out for evaluation (80 questions in all with both kinds). */
  evalFraction: z.number().min(0).max(1).default(0.2),
});
export type LookupOptions = z.output<typeof LookupOptions>;

export const lookup = defineEnvironmentKind({
  name: 'lookup',
  description: 'two-hop questions over the shipped country table (capital by currency, currency by capital) with a lookup tool',
  optionsSchema: LookupOptions,
  create(o) {
    const rows = countryTable();
    const tools = [lookupTool(rows)];
    const calls = (kind: Kind, entity: string, country: string): ToolCall[] => [
      { name: 'lookup', arguments: { entity, relation: 'country' } },
      { name: 'lookup', arguments: { entity: country, relation: kind } },
    ];
    const gold = (row: EnvRow) => {
      const { kind, entity, country } = row.metadata as { kind: Kind; entity: string; country: string };
      const [first, second] = calls(kind, entity, country);
      return goldTrajectory(
        o.format,
        tools,
        [
          { call: first!, observation: country },
          { call: second!, observation: row.reference },
        ],
        row.reference,
      );
    };
    const questions = rows.flatMap((r) => o.kinds.map((kind) => ({ kind, row: r })));
    const rowOf = (q: (typeof questions)[number]): EnvRow => {
      const entity = q.kind === 'capital' ? q.row.currency : q.row.capital;
      const reference = q.row[q.kind];
      return {
        promptId: '',
        prompt: prompt(o.format, q.kind, entity),
        reference,
        metadata: {
          env: 'lookup',
          kind: q.kind,
          entity,
          country: q.row.country,
          goldCalls: 2,
          toolCalls: calls(q.kind, entity, q.row.country),
        },
      };
    };
    const all = questions.map(rowOf);
    const longest = all.reduce((a, r) => (trajectoryChars(o.format, gold(r)) > trajectoryChars(o.format, gold(a)) ? r : a));
    return builtinEnvironment(o, {
      name: 'lookup',
      tools,
      system: 'Answer from the country table only: look facts up with the lookup tool, one hop at a time.',
      maxPromptChars: Math.max(...all.map((r) => r.prompt.length)),
      longestGold: gold(longest),
      gold,
      hint: 'Ask both kinds of question, or move evalFraction away from 0/1 (the table has 42 countries).',
      candidate(d) {
        const q = d.pick(questions);
        const { promptId: _, ...item } = rowOf(q);
        return { key: `${q.kind}:${item.metadata.entity as string}`, item };
      },
    });
  },
});
