/**
 * Renders the column reference of docs/data-contracts.md from the declarations in schemas.ts, so
 * the docs cannot drift from the code (a unit test compares them).
 *
 *   npx tsx activities/store/schemas-doc.ts          rewrites the generated section of the doc
 *   npx tsx activities/store/schemas-doc.ts --check  exits 1 if the doc is out of date
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { arrowTypeName, SCHEMA_NAME_KEY, SCHEMA_VERSION_KEY, type TableSchema } from './arrow.js';
import { CONTRACTS } from './schemas.js';

export const DOC_PATH = fileURLToPath(new URL('../../docs/data-contracts.md', import.meta.url));
export const BEGIN = '<!-- BEGIN GENERATED: schemas (npx tsx activities/store/schemas-doc.ts) -->';
export const END = '<!-- END GENERATED: schemas -->';

const cell = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');

function renderTable(t: TableSchema): string {
  const lines = [
    `### \`${t.name}\` (version ${t.version})`,
    '',
    `Metadata: \`${SCHEMA_NAME_KEY}\` = \`${t.name}\`, \`${SCHEMA_VERSION_KEY}\` = \`${t.version}\`.`,
    '',
    t.doc,
    '',
    '| column | Arrow type | null | meaning |',
    '| --- | --- | --- | --- |',
  ];
  for (const [name, spec] of Object.entries(t.columns)) {
    let meaning = spec.doc;
    if (spec.values) meaning += ` One of ${spec.values.map((v) => `\`${v}\``).join(', ')}.`;
    if (spec.finite) meaning += ' Finite (no NaN / ±Inf).';
    lines.push(`| \`${name}\` | \`${arrowTypeName(spec.kind)}\` | ${spec.nullable ? 'yes' : 'no'} | ${cell(meaning)} |`);
  }
  if (t.rules?.length) {
    lines.push('', 'Rules checked on write and read:', '');
    for (const r of t.rules) lines.push(`- ${r}`);
  }
  return lines.join('\n');
}

/** The generated section, markers included. */
export function renderSchemasSection(): string {
  return [BEGIN, '', ...CONTRACTS.map((t) => `${renderTable(t as unknown as TableSchema)}\n`), END].join('\n');
}

/** The doc with its generated section replaced by the current rendering. */
export function updatedDoc(doc: string): string {
  const a = doc.indexOf(BEGIN);
  const b = doc.indexOf(END);
  if (a < 0 || b < a) throw new Error(`${DOC_PATH} has no generated-section markers (${BEGIN} ... ${END})`);
  return doc.slice(0, a) + renderSchemasSection() + doc.slice(b + END.length);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const doc = readFileSync(DOC_PATH, 'utf8');
  const next = updatedDoc(doc);
  if (process.argv.includes('--check')) {
    if (next !== doc) {
      process.stderr.write(`${DOC_PATH} is out of date: run npx tsx activities/store/schemas-doc.ts\n`);
      process.exit(1);
    }
  } else if (next !== doc) {
    writeFileSync(DOC_PATH, next);
  }
}
