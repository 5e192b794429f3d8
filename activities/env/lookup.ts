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

/** What a question knows of a country, and what it asks. */
type Relation2 = (typeof RELATIONS)[number];

/** A question: the `wanted` fact of the country known by its `known` fact. Two hops unless one side is the country itself. */
interface Question {
  known: Relation2;
  wanted: Relation2;
  row: CountryRow;
}

const hopsOf = (q: Pick<Question, 'known' | 'wanted'>) => (q.known === 'country' || q.wanted === 'country' ? 1 : 2);

/** The question's text: `capital of currency SEK?` (tagged), or a sentence (hermes). */
function prompt(format: ToolCallFormat, q: Pick<Question, 'known' | 'wanted'>, entity: string): string {
  if (format === 'tagged') return `${q.wanted} of ${q.known} ${entity}?`;
  const ask = q.known === 'country' ? `the ${q.wanted} of ${entity}` : `the ${q.wanted} of the country whose ${q.known} is ${entity}`;
  return `What is ${ask}? Use the lookup tool; give the result in <answer></answer>.`;
}

/** The calls that answer a question: to the country first (unless known), then to the wanted fact (unless the country). */
function questionCalls(q: Question): ToolCall[] {
  const entity = q.row[q.known];
  const out: ToolCall[] = [];
  if (q.known !== 'country') out.push({ name: 'lookup', arguments: { entity, relation: 'country' } });
  if (q.wanted !== 'country') out.push({ name: 'lookup', arguments: { entity: q.row.country, relation: q.wanted } });
  return out;
}

export const LookupOptions = z.strictObject({
  /** Two-hop question kinds: `capital` (the capital of the country of a currency), `currency` (the currency of the country of a capital). */
  kinds: z
    .array(z.enum(['capital', 'currency']))
    .min(1)
    .default(['capital', 'currency']),
  /**
   * Fraction of training items that are one-hop questions (the country of a capital or currency, the
   * capital or currency of a country), practice for each hop on every entity of the table; they are
   * never evaluated. Without them a model of 84 two-hop questions memorises the 67 it trains on
   * instead of learning to copy entities into calls (0 of 64 held-out episodes after 600 SFT steps
   * in a trial, at train loss 0.001).
   */
  oneHopFraction: z.number().min(0).lt(1).default(0.5),
  ...builtinOptions,
  /** Fraction of two-hop (kind, entity) questions held out for evaluation (84 in all with both kinds). */
  evalFraction: z.number().min(0).max(1).default(0.2),
});
export type LookupOptions = z.output<typeof LookupOptions>;

export const lookup = defineEnvironmentKind({
  name: 'lookup',
  description:
    'two-hop questions over the shipped country table (capital by currency, currency by capital), one-hop practice in training, with a lookup tool',
  optionsSchema: LookupOptions,
  create(o) {
    const rows = countryTable();
    const tools = [lookupTool(rows)];
    const gold = (row: EnvRow) => {
      const { known, wanted, country } = row.metadata as { known: Relation2; wanted: Relation2; country: string };
      const q: Question = { known, wanted, row: rows.find((r) => r.country === country)! };
      return goldTrajectory(
        o.format,
        tools,
        questionCalls(q).map((call) => ({
          call,
          observation: lookupFact(rows, call.arguments.entity as string, call.arguments.relation as Relation2),
        })),
        row.reference,
      );
    };
    const twoHop: Question[] = rows.flatMap((row) =>
      o.kinds.map((wanted): Question => ({ known: wanted === 'capital' ? 'currency' : 'capital', wanted, row })),
    );
    const oneHop: Question[] = rows.flatMap((row) =>
      (
        [
          ['capital', 'country'],
          ['currency', 'country'],
          ['country', 'capital'],
          ['country', 'currency'],
        ] as const
      ).map(([known, wanted]): Question => ({ known, wanted, row })),
    );
    const rowOf = (q: Question): EnvRow => {
      const entity = q.row[q.known];
      return {
        promptId: '',
        prompt: prompt(o.format, q, entity),
        reference: q.row[q.wanted],
        metadata: {
          env: 'lookup',
          kind: `${q.wanted}_of_${q.known}`,
          known: q.known,
          wanted: q.wanted,
          entity,
          country: q.row.country,
          goldCalls: hopsOf(q),
          toolCalls: questionCalls(q),
        },
      };
    };
    const all = [...twoHop, ...oneHop].map(rowOf);
    const longest = all.reduce((a, r) => (trajectoryChars(o.format, gold(r)) > trajectoryChars(o.format, gold(a)) ? r : a));
    return builtinEnvironment(o, {
      name: 'lookup',
      tools,
      system: 'Answer from the country table only: look facts up with the lookup tool, one hop at a time.',
      maxPromptChars: Math.max(...all.map((r) => r.prompt.length)),
      longestGold: gold(longest),
      gold,
      hint: 'Ask both kinds of question, or move evalFraction away from 0/1 (the table has 42 countries).',
      candidate(d, split) {
        // one-hop practice: training only, any entity (its key carries a draw, so it is never a held-out problem)
        const practice = o.oneHopFraction > 0 && d.uniform() < o.oneHopFraction;
        if (practice && split === 'eval') return null;
        const q = practice ? d.pick(oneHop) : d.pick(twoHop);
        const { promptId: _, ...item } = rowOf(q);
        const key = `${item.metadata.kind as string}:${item.metadata.entity as string}`;
        return { key: practice ? `${key}#${d.intIn(0, 2 ** 30)}` : key, item };
      },
    });
  },
});
