/**
 * The live display of `durable-rl train --follow` (and `status`): what a training run is doing,
 * from its `progress` query. On a terminal the block is redrawn in place (ANSI cursor moves);
 * otherwise (pipes, CI logs, tests) one line is printed per change, and each new evaluation once.
 *
 * Pure rendering (`progressBlock`, `progressLine`, `evalLine`, `beforeAfterRl`) is separate from the
 * `Follower`, which only decides what to write where.
 */
import type { EvalSummary, RunProgress } from '../workflows/run-details.js';

const fmt = (x: number | null | undefined, digits = 3) => (x == null || !Number.isFinite(x) ? '–' : x.toFixed(digits));
const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

/** A text progress bar: `[██████░░░░░░]`. */
export function bar(done: number, total: number, width = 20): string {
  const f = total > 0 ? Math.max(0, Math.min(width, Math.round((done / total) * width))) : 0;
  return `[${'█'.repeat(f)}${'░'.repeat(width - f)}]`;
}

const TRAINING_STAGES = new Set(['rollout', 'reward', 'advantages', 'learner', 'commit']);

/** "step 4/10": the step being trained (1-based) during a step, the steps done otherwise. */
function stepText(p: RunProgress): string {
  const n = TRAINING_STAGES.has(p.stage) ? Math.min(p.step + 1, p.totalSteps) : Math.min(p.step, p.totalSteps);
  return `step ${n}/${p.totalSteps}`;
}

function stageText(p: RunProgress, withBar: boolean): string {
  if (p.stage === 'eval') return `eval of checkpoint ${p.step}`;
  const shards = p.shardsTotal > 0 && (p.stage === 'rollout' || p.stage === 'reward');
  if (!shards) return p.stage;
  return withBar
    ? `${p.stage} ${bar(p.shardsDone, p.shardsTotal)} ${p.shardsDone}/${p.shardsTotal} shards`
    : `${p.stage} ${p.shardsDone}/${p.shardsTotal} shards`;
}

function metricsText(p: RunProgress): string {
  const m = p.lastMetrics;
  if (!m) return '';
  const parts: string[] = [];
  if (m.reward_mean != null) parts.push(`reward ${fmt(m.reward_mean)}`);
  if (m.loss != null) parts.push(`loss ${fmt(m.loss, 4)}`);
  if (m.kl != null) parts.push(`KL ${fmt(m.kl, 4)}`);
  return parts.join(' · ');
}

/** An evaluation in one line: greedy accuracy and pass@k; the mean reward where the reward judges no correctness (accuracy null). */
export function evalText(e: EvalSummary): string {
  if (e.greedyAccuracy === null) return `checkpoint ${e.policyVersion} (${e.phase}): mean reward ${fmt(e.meanReward)}`;
  return `checkpoint ${e.policyVersion} (${e.phase}): greedy ${pct(e.greedyAccuracy)}${e.passAtK ? `, pass@${e.passAtK.k} ${pct(e.passAtK.value)}` : ''}`;
}

/** One line for logs: changes whenever status, phase, step, stage, shards or the last metrics change. */
export function progressLine(p: RunProgress): string {
  const phase = p.phase === 'done' ? '' : ` · phase ${p.phase}`;
  const m = metricsText(p);
  const blocked = (p.blocked ?? []).map((b) => ` · blocked in ${b.stage}: ${b.error}`).join('');
  return `${p.status}${phase} · ${stepText(p)} · ${stageText(p, false)}${m ? ` · last step: ${m}` : ''}${blocked}`;
}

/** A blocked call in one line: where, why, and what happens next (retrying by itself, or waiting for `retry` / `stop`). */
export function blockedText(b: NonNullable<RunProgress['blocked']>[number]): string {
  return `blocked in ${b.stage} (${b.summary}), ${b.calls} call${b.calls === 1 ? '' : 's'} gave up: ${b.type}: ${b.error} — ${b.kind === 'retrying' ? 'retrying by itself' : `fix the cause, then durable-rl retry (or stop)`}`;
}

export function evalLine(e: EvalSummary): string {
  return `eval ${evalText(e)}`;
}

/** The screen of a run: header, phase/step/stage with the shard bar, last metrics, reward trend, evaluations. */
export function progressBlock(p: RunProgress): string[] {
  const lines = [
    `run ${p.runId} · ${p.status}${p.model ? ` · ${p.model}` : ''}`,
    `phase ${p.phase}${p.phase === 'done' ? '' : ` (${p.phaseIndex + 1})`} · ${stepText(p)} · ${stageText(p, true)}`,
  ];
  const m = metricsText(p);
  if (m) lines.push(`last step: ${m}`);
  for (const b of p.blocked ?? []) lines.push(blockedText(b));
  if (p.rewardTrend.length > 1) lines.push(`reward trend (${p.rewardTrend.length} rl steps): ${sparkline(p.rewardTrend)}`);
  for (const e of p.evals) lines.push(`eval ${evalText(e)}`);
  return lines;
}

const SPARK = '▁▂▃▄▅▆▇█';
function sparkline(xs: number[]): string {
  const lo = Math.min(...xs);
  const hi = Math.max(...xs);
  return xs.map((x) => SPARK[hi > lo ? Math.min(7, Math.floor(((x - lo) / (hi - lo)) * 8)) : 3]).join('');
}

/**
 * Accuracy before and after RL from a run's evaluations: `before` is the last evaluation of
 * weights no RL step trained (the end of the last sft phase, or the initial weights), `after` the
 * last evaluation, when RL produced it. Null where there is none (e.g. a run without an rl phase).
 */
export function beforeAfterRl(evals: readonly EvalSummary[]): { before: EvalSummary | null; after: EvalSummary | null } {
  const sorted = [...evals].sort((a, b) => a.policyVersion - b.policyVersion);
  const last = sorted.at(-1);
  const after = last && last.phase === 'rl' ? last : null;
  const before = sorted.filter((e) => e.phase !== 'rl').at(-1) ?? null;
  return { before, after };
}

/** Writes progress to a stream: redraws in place on a TTY, one line per change otherwise. */
export class Follower {
  private drawn = 0;
  private lastLine = '';
  private readonly evalsShown = new Set<string>();

  constructor(
    private readonly out: NodeJS.WriteStream | { write(s: string): boolean; isTTY?: boolean },
    readonly tty = Boolean(out.isTTY),
  ) {}

  update(p: RunProgress): void {
    if (this.tty) {
      // A line wider than the terminal wraps and would break the count of lines to move up over.
      const cols = (this.out as { columns?: number }).columns;
      const block = progressBlock(p).map((l) => (cols && l.length >= cols ? `${l.slice(0, Math.max(1, cols - 2))}…` : l));
      // Move to the start of the block drawn last time, clear to the end of the screen, redraw.
      const up = this.drawn > 0 ? `\x1b[${this.drawn}F\x1b[J` : '';
      this.out.write(`${up}${block.join('\n')}\n`);
      this.drawn = block.length;
      return;
    }
    this.writeNewEvals(p.evals);
    const line = progressLine(p);
    if (line !== this.lastLine) {
      this.lastLine = line;
      this.out.write(`${line}\n`);
    }
  }

  /**
   * Leaves the last drawn block on screen; later output goes below it. Without a terminal, the
   * evaluations of `evals` that no poll caught (a short run can finish between two polls) are
   * written now, so the log holds every evaluation whatever the timing.
   */
  done(evals: readonly EvalSummary[] = []): void {
    this.drawn = 0;
    if (!this.tty) this.writeNewEvals([...evals].sort((a, b) => a.policyVersion - b.policyVersion));
  }

  /** Writes each evaluation not written yet, one line each (no terminal). */
  private writeNewEvals(evals: readonly EvalSummary[]): void {
    for (const e of evals) {
      const key = `${e.policyVersion}:${e.uri}`;
      if (this.evalsShown.has(key)) continue;
      this.evalsShown.add(key);
      this.out.write(`${evalLine(e)}\n`);
    }
  }

  /** A line of its own above the live block (TTY) or in the log. */
  note(line: string): void {
    if (this.tty && this.drawn > 0) {
      this.out.write(`\x1b[${this.drawn}F\x1b[J${line}\n`);
      this.drawn = 0;
    } else this.out.write(`${line}\n`);
  }
}
