/**
 * Renders `RunReportData` (load.ts) as one self-contained HTML page: inline CSS, inline SVG charts
 * (chart.ts), no scripts and no external resources, so the file can be mailed, archived as a CI
 * artifact or opened offline. Every piece of text from the run (ids, names, prompts, completions,
 * references, error messages, config) is HTML-escaped.
 *
 * The page: a header (run id, name, store, resume history, steps and phases, evaluation accuracy
 * before and after RL, warnings), charts of the step metrics (with the reward's components, one
 * line per `reward/<name>` of the step metrics' extras: each function of `reward.functions`) and of
 * the evaluations by step (accuracy and pass@k; mean reward), the sample table of the last RL step,
 * the latest evaluation's samples, and the run's config. An evaluation without accuracy (a reward
 * that judges no correctness) is shown by its mean reward.
 */
import { finite, formatValue, lineChart, type PhaseSpan, type Series } from './chart.js';
import type { EvalRow, RunReportData, TreeNodeView } from './load.js';
import { renderTrajectories, TRAJECTORY_CSS } from './trajectories.js';
import type { MetricsRow } from '../store/schemas.js';

export interface RenderOptions {
  /** Most points drawn per series; longer series are reduced by min/max buckets. Default 1000. */
  maxPoints?: number;
}

/** Escapes text for HTML element content and attribute values. */
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

type NumericMetric = { [K in keyof MetricsRow]: MetricsRow[K] extends number | null ? K : never }[keyof MetricsRow];

/** A chart of step metrics: its id, title, y-axis label and the metrics columns it draws. */
interface MetricChart {
  id: string;
  title: string;
  yLabel: string;
  series: { label: string; key: NumericMetric }[];
  /** Draw mean ± this column as a band around the first series. */
  stdKey?: NumericMetric;
}

/** The step-metric charts, in page order. */
export const METRIC_CHARTS: readonly MetricChart[] = [
  {
    id: 'reward',
    title: 'Reward (mean ± std over samples)',
    yLabel: 'reward',
    series: [{ label: 'reward mean', key: 'reward_mean' }],
    stdKey: 'reward_std',
  },
  { id: 'kl', title: 'KL divergence to the reference policy (per token)', yLabel: 'KL', series: [{ label: 'KL', key: 'kl' }] },
  { id: 'entropy', title: 'Policy entropy (per token)', yLabel: 'entropy (nats)', series: [{ label: 'entropy', key: 'entropy' }] },
  {
    id: 'clip_fraction',
    title: 'Clip fraction (tokens with a clipped ratio)',
    yLabel: 'fraction',
    series: [{ label: 'clip fraction', key: 'clip_fraction' }],
  },
  {
    id: 'completion_length',
    title: 'Completion length (mean, tokens)',
    yLabel: 'tokens',
    series: [{ label: 'completion length', key: 'completion_length_mean' }],
  },
  { id: 'tokens_per_second', title: 'Rollout throughput', yLabel: 'tokens / s', series: [{ label: 'tokens/s', key: 'tokens_per_second' }] },
  { id: 'loss', title: 'Training loss', yLabel: 'loss', series: [{ label: 'loss', key: 'loss' }] },
  { id: 'grad_norm', title: 'Gradient norm (before clipping)', yLabel: 'norm', series: [{ label: 'grad norm', key: 'grad_norm' }] },
  { id: 'step_seconds', title: 'Step wall time', yLabel: 'seconds', series: [{ label: 'step time', key: 'step_seconds' }] },
];

/** Contiguous runs of one phase; a span ends where the next begins (or at the last step). */
export function phaseSpans(steps: readonly MetricsRow[]): PhaseSpan[] {
  const spans: PhaseSpan[] = [];
  for (const s of steps) {
    const last = spans.at(-1);
    if (last && last.phase === s.phase) last.to = s.step;
    else {
      if (last) last.to = s.step;
      spans.push({ phase: s.phase, from: s.step, to: s.step });
    }
  }
  return spans;
}

function xDomainOf(data: RunReportData): [number, number] {
  const xs = [...data.steps.map((s) => s.step), ...data.evals.map((e) => e.step)];
  return xs.length ? [Math.min(...xs), Math.max(...xs)] : [0, 1];
}

function metricCharts(data: RunReportData, phases: PhaseSpan[], xDomain: [number, number], maxPoints: number | undefined): string[] {
  const x = data.steps.map((s) => s.step);
  return METRIC_CHARTS.map((c) => {
    const series: Series[] = c.series.map((s, i) => {
      const values = data.steps.map((r) => r[s.key]);
      if (i > 0 || !c.stdKey) return { label: s.label, values };
      const std = data.steps.map((r) => finite(r[c.stdKey!]));
      return {
        label: s.label,
        values,
        band: {
          label: '± std',
          lo: values.map((v, j) => (finite(v) !== null && std[j] !== null ? v! - std[j]! : null)),
          hi: values.map((v, j) => (finite(v) !== null && std[j] !== null ? v! + std[j]! : null)),
        },
      };
    });
    return lineChart({ id: c.id, title: c.title, yLabel: c.yLabel, x, series, phases, xDomain, maxPoints });
  });
}

/**
 * The reward's components by step: one series per top-level component `reward/<name>` found in
 * the steps' `extra` (mean per scored sample; a run's `reward.functions` log one per function,
 * `reward/<id>`), in name order. Nested components (`reward/<id>/<name>`) are left out. Null when
 * no step has one (sft-only runs, runs from before components were logged).
 */
export function componentsChart(
  data: RunReportData,
  phases: PhaseSpan[],
  xDomain: [number, number],
  maxPoints: number | undefined,
): string | null {
  const keys = [...new Set(data.steps.flatMap((s) => Object.keys(s.extra ?? {}).filter((k) => /^reward\/[^/]+$/.test(k))))].sort();
  if (keys.length === 0) return null;
  return lineChart({
    id: 'reward_components',
    title: 'Reward components (mean per sample)',
    yLabel: 'reward',
    x: data.steps.map((s) => s.step),
    series: keys.map((k) => ({ label: k, values: data.steps.map((s) => s.extra?.[k] ?? null) })),
    phases,
    xDomain,
    maxPoints,
  });
}

/** Mean reward of the greedy completions at each evaluation: the measure of a reward that judges no correctness. */
function evalRewardChart(evals: readonly EvalRow[], phases: PhaseSpan[], xDomain: [number, number], maxPoints: number | undefined): string {
  return lineChart({
    id: 'eval_reward',
    title: 'Evaluation mean reward (greedy completions)',
    yLabel: 'reward',
    x: evals.map((e) => e.step),
    xDomain,
    phases,
    maxPoints,
    series: [{ label: 'mean reward', values: evals.map((e) => e.mean_reward) }],
  });
}

function evalChart(evals: readonly EvalRow[], phases: PhaseSpan[], xDomain: [number, number], maxPoints: number | undefined): string {
  const ks = [...new Set(evals.flatMap((e) => (e.pass_at_k ? [e.pass_at_k.k] : [])))];
  const passLabel = ks.length === 1 ? `pass@${ks[0]}` : 'pass@k';
  return lineChart({
    id: 'eval',
    title: 'Evaluation accuracy (x = steps trained before the evaluation)',
    yLabel: 'accuracy',
    x: evals.map((e) => e.step),
    xDomain,
    yDomain: [0, 1],
    phases,
    maxPoints,
    series: [
      { label: 'greedy accuracy', values: evals.map((e) => e.greedy_accuracy) },
      { label: passLabel, values: evals.map((e) => e.pass_at_k?.value ?? null) },
    ],
  });
}

const pct = (v: number | null | undefined) => (finite(v) === null ? '—' : `${(v! * 100).toFixed(1)}%`);

function stepRange(steps: readonly MetricsRow[]): string {
  return steps.length ? `${steps[0]!.step}–${steps.at(-1)!.step} (${steps.length})` : 'none';
}

/** Evaluation accuracy before RL (the latest evaluation of weights with no RL step) and after (the latest evaluation). */
export function accuracyBeforeAfterRl(data: RunReportData): { before: EvalRow | null; after: EvalRow | null } {
  const firstRl = data.steps.find((s) => s.phase === 'rl');
  if (!firstRl) return { before: data.evals.at(-1) ?? null, after: null };
  const before = data.evals.filter((e) => e.step <= firstRl.step).at(-1) ?? null;
  const after = data.evals.filter((e) => e.step > firstRl.step).at(-1) ?? null;
  return { before, after };
}

function header(data: RunReportData): string {
  const sft = data.steps.filter((s) => s.phase === 'sft');
  const rl = data.steps.filter((s) => s.phase === 'rl');
  const { before, after } = accuracyBeforeAfterRl(data);
  const evalText = (e: EvalRow | null) =>
    !e
      ? 'no evaluation'
      : e.greedy_accuracy === null
        ? `mean reward ${formatValue(e.mean_reward)} (step ${e.step})`
        : `${pct(e.greedy_accuracy)} greedy${e.pass_at_k ? `, pass@${e.pass_at_k.k} ${pct(e.pass_at_k.value)}` : ''} (step ${e.step})`;
  const rows: [string, string][] = [
    ['run', data.run_id],
    ['name', data.name ?? '—'],
    ['store', data.store_uri],
    ['steps', stepRange(data.steps)],
    ['phases', [sft.length ? `SFT ${stepRange(sft)}` : '', rl.length ? `RL ${stepRange(rl)}` : ''].filter(Boolean).join(', ') || '—'],
  ];
  if (data.lineage.length > 1 || data.lineage[0]?.resumed_from) {
    rows.push([
      'history',
      data.lineage
        .map(
          (l) =>
            `${l.run_id} (${l.steps} step${l.steps === 1 ? '' : 's'})${l.resumed_from ? ` resumed from ${l.resumed_from.run_id} at step ${l.resumed_from.step}` : ''}`,
        )
        .join(' ← '),
    ]);
  }
  if (rl.length) {
    rows.push(['eval accuracy before RL', evalText(before)]);
    rows.push(['eval accuracy after RL', evalText(after)]);
  } else {
    rows.push(['latest eval accuracy', evalText(before)]);
  }
  const last = data.steps.at(-1);
  if (last)
    rows.push([
      'last step',
      `reward ${formatValue(last.reward_mean)}, KL ${formatValue(last.kl)}, loss ${formatValue(last.loss)}, reward errors ${last.reward_errors}, dropped ${last.dropped_samples}`,
    ]);
  const table = `<table class="facts">${rows.map(([k, v]) => `<tr><th>${escapeHtml(k)}</th><td>${escapeHtml(v)}</td></tr>`).join('')}</table>`;
  const warnings = data.warnings.length
    ? `<div class="warnings"><strong>${data.warnings.length} warning${data.warnings.length === 1 ? '' : 's'}: left out of this report</strong><ul>${data.warnings.map((w) => `<li>${escapeHtml(w)}</li>`).join('')}</ul></div>`
    : '';
  return `<header><h1>Training run ${escapeHtml(data.run_id)}</h1>${table}${warnings}</header>`;
}

const pre = (s: string | null) => `<pre>${escapeHtml(s ?? '')}</pre>`;

function sampleTable(data: RunReportData): string {
  const s = data.samples;
  if (!s) return '<section><h2>Samples</h2><p>No RL step committed: no samples to show.</p></section>';
  const rows = s.rows
    .map(
      (r) =>
        `<tr><td>${escapeHtml(r.prompt_id)}<br><small>#${r.sample_id}${r.node_id !== null ? ` node ${escapeHtml(r.node_id)}` : ''}</small></td>` +
        `<td>${pre(r.prompt)}</td><td>${pre(r.completion)}<small>${r.completion_tokens} tokens</small></td>` +
        `<td class="num">${escapeHtml(formatValue(r.reward))}${r.reward_error !== null ? `<br><small class="error">${escapeHtml(r.reward_error)}</small>` : ''}</td>` +
        `<td class="num">${escapeHtml(formatValue(r.advantage))}${r.advantage_kind === 'token_mean' ? '<br><small>per-token mean</small>' : ''}</td>` +
        `<td>${escapeHtml(r.finish_reason)}</td></tr>`,
    )
    .join('');
  return (
    `<section><h2>Samples of step ${s.step}${s.run_id !== data.run_id ? ` of run ${escapeHtml(s.run_id)}` : ''} (${s.rows.length} of ${s.total})</h2>` +
    `<table class="samples"><thead><tr><th>prompt</th><th>prompt text</th><th>completion</th><th>reward</th><th>advantage</th><th>finish</th></tr></thead><tbody>${rows}</tbody></table></section>`
  );
}

/** One node and, nested, its children (by branch position, then sample id). */
function treeNode(node: TreeNodeView, childrenOf: ReadonlyMap<string, TreeNodeView[]>): string {
  const kids = childrenOf.get(node.node_id) ?? [];
  const at = node.parent_node_id === null ? 'root' : `branch at token ${node.branch_position}`;
  const text = `<code><span class="shared">${escapeHtml(node.completion.slice(0, node.shared_chars))}</span>${escapeHtml(node.completion.slice(node.shared_chars))}</code>`;
  return (
    `<li><span class="node">${escapeHtml(node.node_id)}</span> <small>#${node.sample_id} · ${at} · ${node.completion_tokens} tokens · ${escapeHtml(node.finish_reason)}</small> ` +
    `${text} <span class="num">reward ${escapeHtml(formatValue(node.reward))}</span> <span class="num">advantage ${escapeHtml(formatValue(node.advantage))}</span>` +
    (kids.length ? `<ul>${kids.map((k) => treeNode(k, childrenOf)).join('')}</ul>` : '') +
    '</li>'
  );
}

/** Tree-structured rollouts: each drawn tree as a nested list, rewards and advantages per node. */
function treeSection(data: RunReportData): string {
  const trees = data.samples?.trees ?? [];
  if (trees.length === 0) return '';
  const drawn = trees.map((t) => {
    const childrenOf = new Map<string, TreeNodeView[]>();
    for (const n of t.nodes) {
      if (n.parent_node_id === null) continue;
      childrenOf.set(n.parent_node_id, [...(childrenOf.get(n.parent_node_id) ?? []), n]);
    }
    for (const list of childrenOf.values()) list.sort((a, b) => a.branch_position - b.branch_position || a.sample_id - b.sample_id);
    const roots = t.nodes.filter((n) => n.parent_node_id === null);
    return (
      `<figure class="tree"><figcaption>${escapeHtml(t.prompt_id)}: ${t.nodes.length} nodes</figcaption>${pre(t.prompt)}` +
      `<ul>${roots.map((r) => treeNode(r, childrenOf)).join('')}</ul></figure>`
    );
  });
  return (
    `<section><h2>Rollout trees of step ${data.samples!.step}</h2><p><small>Each node is a complete sample; grey text is shared with its parent ` +
    "(the child was decoded from the parent's tokens before its branch point). Advantage: the mean of its per-token Sibling-GRPO advantages over the tokens it trains.</small></p>" +
    `${drawn.join('')}</section>`
  );
}

function evalSampleTable(data: RunReportData): string {
  const s = data.eval_samples;
  if (!s) return '<section><h2>Evaluation samples</h2><p>No evaluation committed.</p></section>';
  const rows = s.rows
    .map(
      (r) =>
        `<tr><td>${escapeHtml(r.prompt_id)}</td><td>${pre(r.prompt)}</td><td>${pre(r.completion)}</td>` +
        `<td class="num">${escapeHtml(formatValue(r.reward))}</td><td>${pre(r.reference)}</td></tr>`,
    )
    .join('');
  return (
    `<section><h2>Evaluation samples: policy version ${s.policy_version} (step ${s.step}${s.run_id !== data.run_id ? `, run ${escapeHtml(s.run_id)}` : ''})</h2>` +
    `<table class="samples"><thead><tr><th>prompt</th><th>prompt text</th><th>completion</th><th>reward</th><th>reference</th></tr></thead><tbody>${rows}</tbody></table></section>`
  );
}

function configSection(data: RunReportData): string {
  if (!data.config) return '';
  return `<section><details><summary>Run config</summary>${pre(JSON.stringify(data.config, null, 2))}</details></section>`;
}

const CSS = `
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }
h1 { font-size: 20px; } h2 { font-size: 16px; margin-top: 28px; }
table { border-collapse: collapse; } th, td { text-align: left; vertical-align: top; padding: 4px 8px; border-bottom: 1px solid #ddd; }
table.facts th { color: #555; font-weight: normal; }
.warnings { background: #fff4e6; border: 1px solid #f08c00; padding: 8px 12px; margin-top: 12px; }
.charts { display: flex; flex-wrap: wrap; gap: 12px; }
figure.chart { margin: 0; flex: 1 1 520px; max-width: 640px; } figcaption { font-weight: 600; } figcaption small { font-weight: normal; color: #666; }
svg { font: 11px system-ui, sans-serif; background: #fff; width: 100%; height: auto; }
svg .plot { fill: none; stroke: #ccc; } svg .grid line { stroke: #eee; } svg .axis line { stroke: #888; }
svg .axis text { fill: #444; } svg .axis-label { fill: #222; }
svg .phase-sft { fill: #e7f5ff; } svg .rl-start { stroke: #c92a2a; stroke-dasharray: 4 3; } svg .phase-label { fill: #555; }
svg .not-measured { fill: #999; font-size: 16px; }
pre { white-space: pre-wrap; word-break: break-word; max-height: 14em; overflow: auto; margin: 0; font-size: 12px; }
td.num { text-align: right; white-space: nowrap; } .error { color: #c92a2a; }
figure.tree { margin: 12px 0; } figure.tree ul { list-style: none; padding-left: 18px; border-left: 1px solid #ccc; margin: 2px 0; }
figure.tree li { margin: 3px 0; } .node { font-family: monospace; font-weight: 600; } .shared { color: #999; } span.num { margin-left: 8px; white-space: nowrap; }
`;

/** The report as one self-contained HTML document (no scripts, no external resources). */
export function renderReport(data: RunReportData, opts: RenderOptions = {}): string {
  const phases = phaseSpans(data.steps);
  const xDomain = xDomainOf(data);
  const components = componentsChart(data, phases, xDomain, opts.maxPoints);
  const charts = [
    ...metricCharts(data, phases, xDomain, opts.maxPoints),
    ...(components ? [components] : []),
    evalChart(data.evals, phases, xDomain, opts.maxPoints),
    evalRewardChart(data.evals, phases, xDomain, opts.maxPoints),
  ];
  return (
    '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">' +
    `<title>durable-rl report: ${escapeHtml(data.run_id)}</title><style>${CSS}${TRAJECTORY_CSS}</style></head><body>` +
    header(data) +
    `<section><h2>Training curves</h2><p><small>Shaded: SFT warm-up steps; dashed line: the first RL step.</small></p><div class="charts">${charts.join('')}</div></section>` +
    sampleTable(data) +
    treeSection(data) +
    renderTrajectories(data.trajectories ?? []) +
    evalSampleTable(data) +
    configSection(data) +
    '</body></html>\n'
  );
}
