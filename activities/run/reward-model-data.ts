/**
 * The data of a reward-model run (`model.classifier`, `reward_model` phases; activities/run/config.ts
 * `rewardModelPhaseSchema`), shared by the learner (activities/learner/reward-model-update.ts) and
 * the evaluation (activities/rollout/evaluate.ts) so they agree on every row and token:
 *
 * - `rewardModelRows`: the phase's training rows and held-out rows — `eval.dataset` (with the
 *   dataset's column names), else the seeded `eval.fraction` split of the dataset
 *   (activities/data/reward-model-split.ts), else none held out;
 * - `encodeSide`: one side of a pair as the reward model reads it, BOS + prompt + completion + EOS
 *   (the score head reads the EOS position; the `reward_model` reward gives the same ids with its
 *   default template and `appendEos: true`);
 * - `scorePreferencePairs`: the Bradley-Terry metrics of pairs under the engine's installed weights
 *   (accuracy, margin, loss = mean −log σ(r_c − r_r), mean score).
 */
import type { ModelEngine } from '../model/engine.js';
import { preferenceBatch as pairLayout } from '../model/losses-reward.js';
import { loadPreferenceDataset, type PreferenceRow } from '../data/preference-dataset.js';
export { PreferenceDatasetError } from '../data/preference-dataset.js';
import { splitHeldOut } from '../data/reward-model-split.js';
import type { RewardModelPhase } from './config.js';
import type { ResolvedRun } from './resolve.js';

export interface RewardModelRows {
  train: PreferenceRow[];
  heldOut: PreferenceRow[];
}

/** The phase's training and held-out rows (see the file comment); throws PreferenceDatasetError. */
export function rewardModelRows(run: ResolvedRun, phase: RewardModelPhase): RewardModelRows {
  const alphabet = run.task.alphabet;
  const rows = loadPreferenceDataset(phase.dataset, { alphabet });
  if (phase.eval.dataset) {
    return { train: rows, heldOut: loadPreferenceDataset({ ...phase.dataset, path: phase.eval.dataset.path }, { alphabet }) };
  }
  return splitHeldOut(rows, phase.eval.fraction, run.config.seed);
}

/** What encoding a preference pair takes from the run: its prompt format and tokenizer (pad id). */
export type PairEncoder = Pick<ResolvedRun, 'encodePrompt' | 'encodeCompletion' | 'tokenizer'>;

/** The prompt as the run encodes it (BOS + prompt for a char model), then the completion and its end-of-turn token. */
export function encodeSide(enc: PairEncoder, prompt: string, completion: string): number[] {
  return [...enc.encodePrompt(prompt), ...enc.encodeCompletion(completion)];
}

/** The pairs' token ids (chosen, rejected) in the layout of the Bradley-Terry loss. */
export function encodePairs(enc: PairEncoder, rows: readonly PreferenceRow[]): { chosen: number[]; rejected: number[] }[] {
  return rows.map((r) => ({ chosen: encodeSide(enc, r.prompt, r.chosen), rejected: encodeSide(enc, r.prompt, r.rejected) }));
}

export interface PreferenceScores {
  pairs: number;
  /** Fraction of pairs with r(chosen) > r(rejected). */
  accuracy: number;
  /** Mean r(chosen) − r(rejected). */
  margin: number;
  /** Mean −log σ(r(chosen) − r(rejected)). */
  loss: number;
  /** Mean score of every sequence scored. */
  meanScore: number;
}

/** −log σ(x), stable. */
const softplusNeg = (x: number) => (x >= 0 ? Math.log1p(Math.exp(-x)) : -x + Math.log1p(Math.exp(x)));

/** Scores pairs under the engine's installed weights (a classifier), `perBatch` pairs per engine call. */
export async function scorePreferencePairs(
  engine: ModelEngine,
  enc: PairEncoder,
  rows: readonly PreferenceRow[],
  perBatch = 32,
): Promise<PreferenceScores> {
  const pairs = encodePairs(enc, rows);
  let correct = 0;
  let margin = 0;
  let loss = 0;
  let score = 0;
  for (let at = 0; at < pairs.length; at += perBatch) {
    const b = pairLayout(pairs.slice(at, at + perBatch), { padId: enc.tokenizer.padId ?? 0 });
    const r = await engine.reward({ ids: b.ids, attentionMask: b.attentionMask });
    for (let i = 0; 2 * i < r.length; i++) {
      const d = r[2 * i]! - r[2 * i + 1]!;
      if (d > 0) correct++;
      margin += d;
      loss += softplusNeg(d);
      score += r[2 * i]! + r[2 * i + 1]!;
    }
  }
  const n = pairs.length;
  return n === 0
    ? { pairs: 0, accuracy: 0, margin: 0, loss: 0, meanScore: 0 }
    : { pairs: n, accuracy: correct / n, margin: margin / n, loss: loss / n, meanScore: score / (2 * n) };
}
