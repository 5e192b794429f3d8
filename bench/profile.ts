/**
 * Where a session's time goes (issue 16 item 2: profile first), from onnxruntime's profiler:
 *
 *   npx tsx bench/engine.ts --part train --threads 2 --profile /tmp/prof    # writes /tmp/prof_<date>.json
 *   npx tsx bench/profile.ts /tmp/prof_*.json [--top 20]
 *
 * (any ModelEngine with the `profilePrefix` option writes such a file when it is closed). Sums the
 * trace's node events (`cat: "Node"`, the kernel time of each node run) by operator type and by
 * node, over every run the file holds, and prints each as a share of the total kernel time, with
 * the number of runs. Session-level events (model loading, the runs' own totals) are left out, so
 * the shares are of the time spent inside operators. For a training step the node names say which
 * part of the graph a node belongs to (`model.layers.3/…`, `grad/…`, `adamw/…`).
 */
import { readFileSync } from 'node:fs';

interface TraceEvent {
  cat?: string;
  name?: string;
  dur?: number;
  args?: { op_name?: string };
}

const args = process.argv.slice(2);
const top = args.includes('--top') ? Number(args[args.indexOf('--top') + 1]) : 20;
const files = args.filter((a, i) => !a.startsWith('--') && args[i - 1] !== '--top');
if (files.length === 0) {
  process.stderr.write('usage: npx tsx bench/profile.ts PROFILE.json [more.json] [--top N]\n');
  process.exit(2);
}

/** µs by key, and how many node runs. */
function sum(events: TraceEvent[], key: (e: TraceEvent) => string): [string, { us: number; runs: number }][] {
  const m = new Map<string, { us: number; runs: number }>();
  for (const e of events) {
    const k = key(e);
    const v = m.get(k) ?? { us: 0, runs: 0 };
    v.us += e.dur ?? 0;
    v.runs++;
    m.set(k, v);
  }
  return [...m].sort((a, b) => b[1].us - a[1].us);
}

function table(title: string, rows: [string, { us: number; runs: number }][], total: number): void {
  process.stdout.write(`\n${title}\n`);
  for (const [k, v] of rows.slice(0, top)) {
    process.stdout.write(
      `${((100 * v.us) / total).toFixed(1).padStart(6)}%  ${(v.us / 1000).toFixed(1).padStart(10)} ms  ${String(v.runs).padStart(6)} runs  ${k}\n`,
    );
  }
}

for (const file of files) {
  const events = (JSON.parse(readFileSync(file, 'utf8')) as TraceEvent[]).filter(
    (e) => e.cat === 'Node' && e.name?.endsWith('_kernel_time'),
  );
  const total = events.reduce((n, e) => n + (e.dur ?? 0), 0);
  process.stdout.write(`${file}: ${events.length} node runs, ${(total / 1000).toFixed(1)} ms inside operators\n`);
  table(
    'by operator',
    sum(events, (e) => e.args?.op_name ?? '?'),
    total,
  );
  table(
    'by node',
    sum(events, (e) => e.name!.slice(0, -'_kernel_time'.length)),
    total,
  );
}
