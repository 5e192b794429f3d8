/** renderReport and the SVG chart: structure, escaping, finite coordinates, downsampling. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { downsampleMinMax, lineChart, niceTicks } from '../../../activities/report/chart.js';
import { loadRunReport } from '../../../activities/report/load.js';
import { METRIC_CHARTS, renderReport } from '../../../activities/report/render.js';
import type { EvalRow } from '../../../activities/report/load.js';
import type { MetricsRow } from '../../../activities/store/schemas.js';
import { commitEval, commitRlStep, commitSftStep, reportData, samples, tempStore } from './helpers.js';

/** The `<svg data-chart="id">...</svg>` element of a chart. */
function chartSvg(html: string, id: string): string {
  const m = new RegExp(`<svg data-chart="${id}"[\\s\\S]*?</svg>`).exec(html);
  assert.ok(m, `chart ${id} present`);
  return m[0];
}

/** Points of each polyline in an svg, as [x, y] pairs. */
function polylines(svg: string): { series: string; points: [number, number][] }[] {
  return [...svg.matchAll(/<polyline[^>]*data-series="([^"]*)"[^>]*points="([^"]*)"/g)].map((m) => ({
    series: m[1]!,
    points: m[2]!
      .trim()
      .split(/\s+/)
      .map((p) => p.split(',').map(Number) as [number, number]),
  }));
}

const evalRow = (step: number, acc: number, pass: number | null): EvalRow => ({
  run_id: 'run-1',
  policy_version: step,
  step,
  phase: step === 0 ? 'init' : 'rl',
  greedy_accuracy: acc,
  pass_at_k: pass === null ? null : { k: 8, value: pass },
  mean_reward: acc,
  num_prompts: 10,
  samples: [],
});

describe('renderReport', () => {
  it('draws one svg per chart, each with one polyline per measured series of as many points as it has values', async () => {
    const { store, cleanup } = await tempStore();
    try {
      // 2 SFT steps (no reward, no KL) then 4 RL steps; one RL step did not measure entropy.
      await commitSftStep(store, 'run-1', 0);
      await commitSftStep(store, 'run-1', 1);
      for (const s of [2, 3, 4, 5]) await commitRlStep(store, 'run-1', s, samples(s, 2), 2, s === 4 ? { entropy: null } : {});
      await commitEval(store, 'run-1', { ...evalRow(0, 0.1, null) });
      await commitEval(store, 'run-1', { ...evalRow(2, 0.3, 0.5) });
      await commitEval(store, 'run-1', { ...evalRow(6, 0.6, 0.9) });
      const html = renderReport(await loadRunReport(store, 'run-1'));

      // the metric charts, evaluation accuracy and evaluation mean reward (no reward components logged here)
      assert.equal((html.match(/<svg\b/g) ?? []).length, METRIC_CHARTS.length + 2);
      const count = (id: string) => polylines(chartSvg(html, id)).map((p) => [p.series, p.points.length]);
      assert.deepEqual(count('reward'), [['reward mean', 4]]);
      assert.deepEqual(count('kl'), [['KL', 4]]);
      assert.deepEqual(count('entropy'), [['entropy', 5]]);
      assert.deepEqual(count('loss'), [['loss', 6]]);
      assert.deepEqual(count('completion_length'), [['completion length', 6]]);
      assert.deepEqual(count('eval'), [
        ['greedy accuracy', 3],
        ['pass@8', 2],
      ]);
      assert.deepEqual(count('eval_reward'), [['mean reward', 3]]);
      assert.doesNotMatch(html, /data-chart="reward_components"/);
      // The reward band: mean ± std over the 4 RL steps (4 upper + 4 lower vertices).
      const band = /<polygon class="band"[^>]*points="([^"]*)"/.exec(chartSvg(html, 'reward'));
      assert.equal(band![1]!.split(' ').length, 8);
      // Ticks and axis labels.
      assert.match(chartSvg(html, 'loss'), /<g class="axis y-axis">.*<text[^>]*>loss<\/text>/);
      assert.match(chartSvg(html, 'loss'), /<g class="axis x-axis">.*>step<\/text>/);
    } finally {
      await cleanup();
    }
  });

  it('plots higher values higher and later steps further right', () => {
    const html = renderReport(reportData([{ loss: 1 }, { loss: 3 }, { loss: 2 }]));
    const { points } = polylines(chartSvg(html, 'loss'))[0]!;
    assert.ok(points[0]![0] < points[1]![0] && points[1]![0] < points[2]![0], 'x ascending');
    assert.ok(points[1]![1] < points[2]![1] && points[2]![1] < points[0]![1], 'svg y grows downwards: loss 3 highest');
  });

  it('says "not measured" for a chart whose series is all null, and draws no line there', () => {
    const html = renderReport(reportData([{ kl: null }, { kl: null }, { kl: null }]));
    const svg = chartSvg(html, 'kl');
    assert.match(svg, /not measured/);
    assert.equal(polylines(svg).length, 0);
    assert.doesNotMatch(chartSvg(html, 'loss'), /not measured/);
    // One unmeasured series of two: named in the legend, the other still drawn.
    const evals = renderReport(reportData([{}, {}], { evals: [evalRow(0, 0.2, null), evalRow(1, 0.4, null)] }));
    const evalSvg = chartSvg(evals, 'eval');
    assert.match(evalSvg, /pass@k: not measured/);
    assert.deepEqual(
      polylines(evalSvg).map((p) => p.series),
      ['greedy accuracy'],
    );
  });

  it('escapes run text everywhere: a <script> in a completion, prompt, reward error, eval sample, name or config stays text', () => {
    const evil = '<script>alert("x")</script>&';
    const html = renderReport(
      reportData([{}], {
        name: evil,
        config: { note: evil },
        warnings: [evil],
        samples: {
          run_id: 'run-1',
          step: 0,
          total: 1,
          rows: [
            {
              run_id: 'run-1',
              step: 0,
              prompt_id: evil,
              sample_id: 0,
              node_id: null,
              group_id: 'g',
              policy_version: 0,
              prompt: evil,
              completion: evil,
              completion_tokens: 3,
              finish_reason: 'stop',
              reward: null,
              reward_error: evil,
              advantage: 0.5,
              advantage_kind: 'scalar',
            },
          ],
        },
        eval_samples: {
          run_id: 'run-1',
          policy_version: 0,
          step: 0,
          rows: [{ prompt_id: 'e', prompt: evil, completion: evil, reward: 1, reference: evil }],
        },
      }),
    );
    assert.doesNotMatch(html, /<script/i);
    assert.ok(html.includes('&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;'));
    // name, warning, sample prompt id, prompt, completion, reward error, eval prompt, completion, reference: 9 times
    // in tables and header, plus the config JSON (where the quotes are JSON-escaped first).
    assert.equal(html.split('&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;').length - 1, 9);
    assert.ok(html.includes('&lt;script&gt;alert(\\&quot;x\\&quot;)&lt;/script&gt;&amp;'), 'config escaped');
  });

  it('never writes NaN or Infinity into the page: non-finite values are gaps, counted in the caption', () => {
    const html = renderReport(
      reportData([
        { loss: 1, grad_norm: Number.NaN, reward_mean: 0.5, reward_std: Number.POSITIVE_INFINITY },
        { loss: Number.NaN, grad_norm: Number.POSITIVE_INFINITY, reward_mean: Number.NEGATIVE_INFINITY },
        { loss: 2, grad_norm: Number.NaN, entropy: 1e308 },
        { loss: 3, grad_norm: Number.NaN, entropy: -1e308 },
      ]),
    );
    assert.doesNotMatch(html, /NaN|Infinity/);
    assert.deepEqual(polylines(chartSvg(html, 'loss'))[0]!.points.length, 3);
    assert.match(html, /Training loss <small>\(1 non-finite value not drawn\)/);
    assert.match(chartSvg(html, 'grad_norm'), /not measured/);
    const entropy = polylines(chartSvg(html, 'entropy'))[0]!.points;
    assert.ok(entropy.flat().every(Number.isFinite), 'extreme but finite values map to finite coordinates');
  });

  it('shades SFT steps and marks where RL starts', () => {
    const steps = [0, 1, 2, 3, 4].map((i) => ({ phase: (i < 2 ? 'sft' : 'rl') as 'sft' | 'rl' }));
    const html = renderReport(reportData(steps));
    const svg = chartSvg(html, 'loss');
    assert.equal((svg.match(/<rect class="phase-sft"/g) ?? []).length, 1);
    assert.match(svg, /<line class="rl-start"[^>]*><title>RL starts at step 2<\/title>/);
    const rlOnly = chartSvg(renderReport(reportData([{}, {}])), 'loss');
    assert.doesNotMatch(rlOnly, /phase-sft/);
  });

  it('shows evaluation accuracy before and after RL in the header', () => {
    const steps = [0, 1, 2, 3].map((i) => ({ phase: (i < 2 ? 'sft' : 'rl') as 'sft' | 'rl' }));
    const html = renderReport(reportData(steps, { evals: [evalRow(0, 0.1, null), evalRow(2, 0.25, 0.5), evalRow(4, 0.75, 0.875)] }));
    assert.match(html, /eval accuracy before RL<\/th><td>25\.0% greedy, pass@8 50\.0% \(step 2\)/);
    assert.match(html, /eval accuracy after RL<\/th><td>75\.0% greedy, pass@8 87\.5% \(step 4\)/);
    assert.match(html, /phases<\/th><td>SFT 0–1 \(2\), RL 2–3 \(2\)/);
  });

  it('charts reward/<name> components of the steps: reward/correctness and reward/format over 3 rl steps after 1 sft step, nested reward/correctness/answered left out', () => {
    const steps: Partial<MetricsRow>[] = [
      { phase: 'sft', extra: {} },
      { extra: { 'reward/correctness': 0.25, 'reward/format': 0.5, 'reward/correctness/answered': 1, kl_sum: 3 } },
      { extra: { 'reward/correctness': 0.5, 'reward/format': 0.75, 'reward/correctness/answered': 1 } },
      { extra: { 'reward/correctness': 0.75, 'reward/format': 1 } },
    ];
    const svg = chartSvg(renderReport(reportData(steps)), 'reward_components');
    assert.deepEqual(
      polylines(svg).map((p) => [p.series, p.points.length]),
      [
        ['reward/correctness', 3],
        ['reward/format', 3],
      ],
    );
    assert.match(svg, /Reward components \(mean per sample\)/);
    // higher values higher: reward/format's last point (1) above reward/correctness's (0.75)
    const [correctness, format] = polylines(svg);
    assert.ok(format!.points[2]![1] < correctness!.points[2]![1]);
  });

  it('an evaluation without accuracy (a reward that judges no correctness) shows its mean reward: in the header and the mean-reward chart, the accuracy chart "not measured"', () => {
    const steps = [0, 1, 2, 3].map((i) => ({ phase: (i < 2 ? 'sft' : 'rl') as 'sft' | 'rl' }));
    const noAcc = (step: number, reward: number): EvalRow => ({ ...evalRow(step, 0, null), greedy_accuracy: null, mean_reward: reward });
    const html = renderReport(reportData(steps, { evals: [noAcc(0, 0.125), noAcc(2, 0.25), noAcc(4, 0.625)] }));
    assert.match(html, /eval accuracy before RL<\/th><td>mean reward 0\.25\d* \(step 2\)/);
    assert.match(html, /eval accuracy after RL<\/th><td>mean reward 0\.625\d* \(step 4\)/);
    assert.match(chartSvg(html, 'eval'), /not measured/);
    assert.equal(polylines(chartSvg(html, 'eval')).length, 0);
    assert.deepEqual(
      polylines(chartSvg(html, 'eval_reward')).map((p) => [p.series, p.points.length]),
      [['mean reward', 3]],
    );
  });

  it('reduces 10 000 steps to about 1000 points per chart and keeps the extremes', () => {
    const n = 10_000;
    const steps = Array.from({ length: n }, (_, i) => ({ loss: Math.sin(i / 50) + (i === 1234 ? 9 : 0) + (i === 8765 ? -9 : 0) }));
    const html = renderReport(reportData(steps));
    const { points } = polylines(chartSvg(html, 'loss'))[0]!;
    assert.ok(points.length <= 1000 && points.length >= 900, `${points.length} points`);
    const ys = points.map((p) => p[1]);
    const top = Math.min(...ys);
    const bottom = Math.max(...ys);
    // The spike (loss 10) is the highest point, the dip (loss -10) the lowest, at their steps.
    const xAt = (y: number) => points.find((p) => p[1] === y)![0];
    const sx = (step: number) => 64 + (step / (n - 1)) * (640 - 16 - 64);
    assert.ok(Math.abs(xAt(top) - sx(1234)) < 0.2);
    assert.ok(Math.abs(xAt(bottom) - sx(8765)) < 0.2);
    assert.match(html, /10000 points reduced to \d+ \(min\/max per bucket\)/);
    assert.ok(html.length < 1_000_000, `${html.length} bytes`);
  });
});

describe('chart helpers', () => {
  it("downsampleMinMax keeps every bucket's minimum and maximum, the first and last point, and skips non-finite values", () => {
    const values: (number | null)[] = Array.from({ length: 5000 }, (_, i) => (i % 7 === 0 ? null : Math.cos(i)));
    values[10] = Number.NaN;
    values[2500] = 100;
    values[4000] = -100;
    const keep = downsampleMinMax(values, 200);
    assert.ok(keep.length <= 200);
    assert.ok(keep.includes(2500) && keep.includes(4000));
    assert.equal(keep[0], 1);
    assert.equal(keep.at(-1), 4999);
    assert.ok(keep.every((i) => Number.isFinite(values[i])));
    assert.deepEqual(
      keep,
      [...keep].sort((a, b) => a - b),
    );
    assert.deepEqual(downsampleMinMax([1, null, 3], 1000), [0, 2], 'short series: every finite point');
  });

  it('niceTicks covers the range at 1-2-5 spacings', () => {
    assert.deepEqual(niceTicks(0, 1, 5), { ticks: [0, 0.2, 0.4, 0.6, 0.8, 1], step: 0.2 });
    assert.deepEqual(niceTicks(0, 97, 7, 1).ticks, [0, 20, 40, 60, 80]);
    assert.deepEqual(niceTicks(0, 3, 7, 1).ticks, [0, 1, 2, 3], 'steps: never a fractional tick');
  });

  it('a single point chart still has finite axes', () => {
    const svg = lineChart({ id: 'one', title: 't', yLabel: 'y', x: [5], series: [{ label: 's', values: [0] }] });
    assert.doesNotMatch(svg, /NaN|Infinity/);
    assert.equal(polylines(svg)[0]!.points.length, 1);
  });
});
