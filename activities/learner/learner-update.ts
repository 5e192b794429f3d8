/**
 * The learner activity of a training run (learner queue): the optimizer updates of one step.
 *
 *   checkpoint `step` ──► batch (sft: gold completions; rl: rollouts × advantages)
 *                     ──► engine.trainStep per update (sft: updatesPerStep batches; rl: ppoEpochs ×
 *                         miniBatches mini-batches of the step's rows), each over its micro-batches
 *                     ──► checkpoint `step + 1` written (commitStep commits it)
 *
 * Batches. sft: items [promptOffset, promptOffset + batchSize) of the task's train split; each
 * sequence is BOS + prompt + gold completion + EOS with the loss on the completion and EOS
 * (`sft` loss); with an environment, the item's gold trajectory segment by segment (run/gold-episode.ts:
 * the policy's turns in the loss, observations and glue not). rl: every rollout row whose advantages row keeps at least one token (rows the
 * advantage stage dropped — all-false loss mask — or that have no completion are left out; a row
 * without an advantages row is an error), sequence = prompt_token_ids + completion_token_ids, loss
 * on the kept completion tokens — of a multi-turn episode only those the policy sampled (the
 * rollout's loss_mask: observations and template glue are context, never in the loss, the KL, the
 * importance ratios or the mismatch metrics); the phase's clipped-surrogate loss gets `old_logprobs`
 * (behaviour_logprobs at their positions), `advantages` ([B]; [B,T] when the loss option says
 * 'token' or any row has token_advantages, which take precedence as the data contract says) and,
 * with a KL term, `ref_logprobs` scored under the reference checkpoint — with `kl.inReward` read from
 * the step's reference_logprobs artifact instead (`input.referenceLogprobs`, the values the advantage
 * stage charged in the rewards): the loss has no KL term then, but still reports `kl`, and the
 * reference is not scored twice. Every sequence is right-padded to the batch's longest (pad id 0, attention 0).
 * The rl learner's logprobs (policy and reference), KL and entropy are of softmax(logits / T), T the
 * phase's sampling temperature: the distribution the behaviour logprobs were recorded from.
 *
 * PPO epochs and mini-batches (rl). Each of the phase's `ppoEpochs` passes orders the kept rows by a
 * permutation drawn from (run seed, step, epoch) with the counter RNG (batch order when there is
 * one mini-batch) and cuts them into `miniBatches` mini-batches (sizes differ by at most one row);
 * each mini-batch is one AdamW update at the step's lr. The ratio's old logprobs are the policy that
 * sampled for every update, so after the first update the ratio leaves 1 and the clip range binds.
 * Off-policy (`rollout.offPolicySteps` k > 0) the rollouts come from checkpoint
 * policyVersion ≤ `step` (their rows' `policy_version`), and the ratio against their behaviour
 * logprobs is the clipped importance ratio π_θ / π_behaviour from the first update on.
 * Reference logprobs are scored once per row before the first update. When the step makes more than
 * one update, or the loss has `tis`, the learner also scores the rows under checkpoint `step` (the
 * sampling weights) before the first update: with `tis` those are the ratio's `old_logprobs` and the
 * behaviour logprobs become `rollout_logprobs`; in any case they give the rollout/learner mismatch
 * over the whole batch. Without that scoring (one update, no `tis`) the mismatch is the update's own
 * `logprob_diff` and `approx_kl` (on-policy, at that update the learner's weights are the sampling
 * weights; off-policy they include the k steps of staleness).
 *
 * Metrics: means over the step's updates of the loss's metrics; with more than one epoch also
 * `clip_frac_last_epoch` and `ratio_mean_last_epoch` (means over the last epoch's updates); `updates`
 * (updates applied); `mismatch_logprob_diff` (mean |log π_learner − log π_rollout| over the loss
 * tokens) and `mismatch_kl` (k3 of the two: e^x − 1 − x, x = log π_learner − log π_rollout, x
 * clamped to ±20 and the estimate to 10, an estimate of KL(π_rollout ‖ π_learner)).
 *
 * Micro-batches (gradient accumulation). The engine averages the gradients of the micro-batches
 * with equal weights (grad_scale = 1/n). The batch is cut into n = ceil(B / microBatchSize)
 * micro-batches of as equal a size as possible (sizes differ by at most one row), in batch order.
 * - rl `token_mean` (the default): the learner switches the loss's `globalTokenCount` on and feeds
 *   `loss_token_count` = the update's (mini-batch's) loss tokens / n, so each micro-batch's sum is
 *   divided by the mini-batch's token count and the update equals the mini-batch's token mean for
 *   any microBatchSize (up to float rounding). With one micro-batch this is the plain token mean.
 * - rl `sequence_mean` / `constant`: exact when n divides B (equal row counts); otherwise rows of
 *   the smaller micro-batches weigh up to 1/(B/n) more.
 * - sft: the `sft` loss is a token mean per micro-batch; exact when the micro-batches hold equal
 *   numbers of loss tokens (always the case with one micro-batch — the default microBatchSize 64 ≥
 *   batchSize 64 — and for fixed-length gold answers when n divides B).
 *
 * Progress and cancellation: heartbeats carry the update and the micro-batches done within it
 * (`microBatchesDone`, after each engine run; the engine runs on its own thread, so heartbeats flow
 * during a run however long); the activity's cancellation is checked before every session run, so
 * a cancelled learner stops at the next micro-batch boundary and writes nothing. The train state
 * moves into the engine's worker (`moveState`), so this process keeps no copy of it.
 *
 * Idempotent: when checkpoint step + 1 is already committed its entries are returned without
 * computing. Deterministic: the same checkpoint, batch and seed give bitwise the same
 * model.safetensors (fixed intra-op threads; the only randomness, the mini-batch order, is a pure
 * function of the seed, step and epoch).
 *
 * Finite weights only: a checkpoint loaded from the store, and the state the step's updates
 * produced, are scanned for NaN and ±Infinity (parameters and AdamW moments); one found fails the
 * activity non-retryably (`NonFiniteWeights`, naming the tensor and the step), so the run shows
 * blocked (needs-user) instead of training on, and never commits such a checkpoint.
 */
import { ApplicationFailure } from '@temporalio/common';
import { logger } from '../common/log.js';
import type { ModelEngine } from '../model/engine.js';
import type { ExtraValue, TrainBatch, TrainState } from '../model/engine-types.js';
import type { WeightMap } from '../model/graphs/common.js';
import { ADVANTAGES_NAME, checkpointPrefix, METRICS_NAME, stepPrefix } from '../store/keys.js';
import { committedSteps, readEntry, readManifest, type ManifestEntry } from '../store/manifest.js';
import type { ObjectStore } from '../store/object-store.js';
import { decodeAdvantages, decodeMetrics, decodeReferenceLogprobs, decodeRollouts, type AdvantagesRow } from '../store/schemas.js';
import { stage, type StageContext } from '../run/stage.js';
import { RunEngines } from '../run/engines.js';
import type { RlPhase } from '../run/config.js';
import { crashPoint } from '../run/faults.js';
import { loadRun, type ResolvedRun } from '../run/resolve.js';
import type { LearnerInput, LearnerResult } from '../run/types.js';
import { encodeGoldEpisode } from '../run/gold-episode.js';
import { firstNonFinite, loadReferenceWeights, loadTrainState, writeCheckpoint } from '../checkpoint/checkpoint.js';
import { CounterRng } from '../common/rng.js';
import { buildLoss, type ClippedSurrogateOptions } from './index.js';
import type { LossBuilder } from '../model/losses.js';
import { preferenceUpdate } from './preference-update.js';
import { rewardModelUpdate } from './reward-model-update.js';

const log = logger('learner');

// ── per-run engines ─────────────────────────────────────────────────────────────────────────────

interface RunEngine {
  engine: ModelEngine;
  /** The train state this process last produced (checkpoint `version`), with the sha256s of its two files. */
  last: { version: number; shas: string; state: TrainState } | null;
  /** Reference weights for the KL term, by version. */
  reference: { version: number; weights: WeightMap } | null;
}

/** The learner's engines, one per run (activities/run/engines.ts). */
const engines = new RunEngines<RunEngine>({
  slot: (engine) => ({ engine, last: null, reference: null }),
  release: (slot) => slot.engine.close().catch((err: unknown) => log.warn({ err }, 'releasing an engine failed')),
});

/**
 * The learner's engine of run `runId` with the reference weights of checkpoint `version` installed
 * (loaded once per version and kept, as for the loss's KL term): the reference-scoring activity
 * (reference-logprobs.ts) shares this process's engine and reference weights with the learner.
 */
export async function referenceEngine(store: ObjectStore, runId: string, run: ResolvedRun, version: number): Promise<ModelEngine> {
  const cached = engines.slot(store.root, runId, run);
  if (cached.reference?.version !== version)
    cached.reference = { version, weights: await loadReferenceWeights(store, runId, version, run.model) };
  cached.engine.setWeights(cached.reference.weights, `reference:${version}`);
  return cached.engine;
}

/** The checkpoint's files and their sha256s, as one comparable string. */
const shasOf = (entries: readonly ManifestEntry[]) =>
  entries
    .map((e) => `${e.name}:${e.sha256}`)
    .sort()
    .join(' ');

/** The failure type of a learner that found weights or moments holding NaN or ±Infinity (non-retryable: the same input gives the same values). */
export const NON_FINITE_FAILURE_TYPE = 'NonFiniteWeights';

/**
 * Refuses a train state holding a value that is not finite: `loaded` a checkpoint the step would
 * start from, else the state the step's updates produced (checked before checkpoint step + 1 is
 * written, so it is never committed). The engine already skips an update whose gradient is not
 * finite (`skipped`); this catches what that cannot: a checkpoint stored with NaN, or an update
 * that overflows (a learning rate far too large). Non-retryable: the run shows blocked, waiting for
 * `stop` (a retry trains the same update again).
 */
function assertFiniteState(state: TrainState, step: number, loaded: boolean): void {
  const bad = firstNonFinite(state, { trainedOnly: !loaded });
  if (!bad) return;
  const where = `${bad.tensor} (${bad.count} non-finite value${bad.count === 1 ? '' : 's'}, ${bad.value} at index ${bad.index})`;
  throw ApplicationFailure.nonRetryable(
    loaded
      ? `learnerUpdate step ${step}: checkpoint ${step} holds ${where}; no step can train from it: stop the run and resume-from an earlier checkpoint (durable-rl resume-from <run> --step N)`
      : `learnerUpdate step ${step}: the update made ${where}; checkpoint ${step + 1} is not written: stop the run and train again with a lower lr (or optimizer.maxGradNorm), from checkpoint ${step} or earlier`,
    NON_FINITE_FAILURE_TYPE,
  );
}

// ── batches ─────────────────────────────────────────────────────────────────────────────────────

/** One training sequence before padding. */
interface Row {
  ids: number[];
  /** Loss weight per position (0/1), same length as ids. */
  lossMask: number[];
  /** rl: the ratio's old logprob per position (0 outside the loss): behaviour, or the learner's own with `tis`. */
  oldLogprobs?: number[];
  /** rl with `tis`: the behaviour (rollout engine's) logprob per position (0 outside the completion). */
  rolloutLogprobs?: number[];
  /** rl with a KL term: the reference logprobs as scored (padded to the step's longest row). */
  refLogprobs?: Float32Array;
  /** rl: the sequence's advantage, or per position (0 outside the completion) for token advantages. */
  advantage?: number | number[];
}

function sftRows(run: ResolvedRun, input: LearnerInput): Row[] {
  const { task, config } = run;
  if (!Number.isSafeInteger(input.batchSize) || input.batchSize < 1) {
    throw ApplicationFailure.nonRetryable(
      `learnerUpdate step ${input.step}: batchSize must be a positive integer, got ${input.batchSize}`,
      'BadLearnerInput',
    );
  }
  const items = task.prompts(config.seed, 'train', input.batchSize, input.promptOffset);
  // a run with an environment: the gold trajectory, tokenised segment by segment as the episode rollout does (observations loss mask 0)
  const env = run.environment;
  if (env) return items.map((item) => encodeGoldEpisode(run, env, item));
  return items.map((item) => {
    const prompt = run.encodePrompt(item.prompt, item.messages);
    const completion = run.encodeCompletion(task.sftTarget(item));
    return {
      ids: [...prompt, ...completion],
      lossMask: [...prompt.map(() => 0), ...completion.map(() => 1)],
    };
  });
}

/** The clipped-surrogate options of an rl phase (parseRunConfig allows no other rl loss). */
function surrogateOptions(phase: RlPhase, phaseIndex: number): ClippedSurrogateOptions {
  if (phase.loss.name !== 'clipped_surrogate') {
    throw ApplicationFailure.nonRetryable(
      `phases.${phaseIndex}.loss.name is "${phase.loss.name}"; an rl phase trains with "clipped_surrogate"`,
      'BadLearnerInput',
    );
  }
  return phase.loss.options;
}

const rowKey = (r: { prompt_id: string; sample_id: number; node_id: string | null }) =>
  `${r.prompt_id}\u0000${r.sample_id}\u0000${r.node_id ?? ''}`;

/**
 * The rl batch. Advantages are per token ([B,T]) when the loss asks for them (`advantages: 'token'`)
 * or when any row carries token_advantages (the data contract: they take precedence over the scalar;
 * per-token estimators such as REINFORCE++ and sibling GRPO write them); rows without them then
 * have their scalar advantage on every completion token.
 */
async function rlRows(
  store: ObjectStore,
  input: LearnerInput,
  phase: RlPhase,
  progress: StageContext['progress'],
  /** kl.inReward: the step's reference logprobs artifact by rowKey (completion tokens), used as ref_logprobs. */
  reference?: ReadonlyMap<string, ArrayLike<number>>,
): Promise<{ rows: Row[]; dropped: number; tokenAdv: boolean }> {
  const prefix = stepPrefix(input.runId, input.step);
  if (!input.advantages) {
    throw ApplicationFailure.nonRetryable(
      `learnerUpdate step ${input.step} (rl): no advantages entry given; the rl learner needs the step's ${ADVANTAGES_NAME}`,
      'BadLearnerInput',
    );
  }
  if (input.rollouts.length === 0) {
    throw ApplicationFailure.nonRetryable(`learnerUpdate step ${input.step} (rl): no rollouts entries given`, 'BadLearnerInput');
  }
  progress({ phase: 'read', rollouts: input.rollouts.length });
  const advSource = store.uri(`${prefix}/${input.advantages.key}`);
  const advRows = decodeAdvantages(await readEntry(store, prefix, input.advantages), advSource);
  const byKey = new Map<string, AdvantagesRow>();
  for (const a of advRows) byKey.set(rowKey(a), a);
  const tokenAdv = surrogateOptions(phase, input.phaseIndex).advantages === 'token' || advRows.some((a) => a.token_advantages !== null);

  const rows: Row[] = [];
  let dropped = 0;
  for (const entry of input.rollouts) {
    const source = store.uri(`${prefix}/${entry.key}`);
    for (const r of decodeRollouts(await readEntry(store, prefix, entry), source)) {
      const a = byKey.get(rowKey(r));
      const n = r.completion_token_ids.length;
      const where = `${source} row (prompt_id ${r.prompt_id}, sample_id ${r.sample_id})`;
      if (!a) {
        throw ApplicationFailure.nonRetryable(
          `${where} has no row in ${advSource}: the advantages must be computed from these rollouts (one row per rollout row)`,
          'BadLearnerInput',
        );
      }
      if (n === 0) {
        dropped++;
        continue;
      }
      const estimated = a.loss_mask ?? new Array<boolean>(n).fill(true);
      // an episode's tokens the policy did not sample (observations, glue) never enter the loss, the KL or a ratio
      const policy = r.loss_mask;
      const keep = policy ? estimated.map((m, j) => m && policy[j] === true) : estimated;
      if (estimated.length !== n) {
        throw ApplicationFailure.nonRetryable(
          `${where}: ${n} completion tokens but its advantages row has a loss_mask of ${estimated.length}; the advantages must come from these rollouts`,
          'BadLearnerInput',
        );
      }
      if (!keep.some(Boolean)) {
        dropped++;
        continue;
      }
      const p = r.prompt_token_ids.length;
      if (p === 0)
        throw ApplicationFailure.nonRetryable(`${where}: empty prompt_token_ids (a prompt starts with BOS at least)`, 'BadLearnerInput');
      const T = p + n;
      const ids = [...r.prompt_token_ids, ...r.completion_token_ids];
      const lossMask = new Array<number>(T).fill(0);
      const oldLogprobs = new Array<number>(T).fill(0);
      for (let j = 0; j < n; j++) {
        lossMask[p + j] = keep[j] ? 1 : 0;
        oldLogprobs[p + j] = r.behaviour_logprobs[j]!;
      }
      let advantage: number | number[];
      if (tokenAdv) {
        if (a.token_advantages && a.token_advantages.length !== n) {
          throw ApplicationFailure.nonRetryable(
            `${where}: ${n} completion tokens but ${a.token_advantages.length} token_advantages`,
            'BadLearnerInput',
          );
        }
        const per = new Array<number>(T).fill(0);
        for (let j = 0; j < n; j++) per[p + j] = a.token_advantages ? a.token_advantages[j]! : a.advantage!;
        advantage = per;
      } else {
        advantage = a.advantage!;
      }
      let refLogprobs: Float32Array | undefined;
      if (reference) {
        const ref = reference.get(rowKey(r));
        if (!ref || ref.length !== n) {
          throw ApplicationFailure.nonRetryable(
            `${where}: ${ref ? `${ref.length} reference logprobs for ${n} completion tokens` : 'no row'} in the step's reference logprobs (${input.referenceLogprobs!.key}); they must be scored from these rollouts`,
            'BadLearnerInput',
          );
        }
        refLogprobs = new Float32Array(T);
        refLogprobs.set(ref, p);
      }
      rows.push({ ids, lossMask, oldLogprobs, advantage, ...(refLogprobs ? { refLogprobs } : {}) });
    }
  }
  return { rows, dropped, tokenAdv };
}

/** n = ceil(B / size) contiguous micro-batches whose sizes differ by at most one row. */
function splitRows<T>(rows: T[], size: number): T[][] {
  return splitInto(rows, Math.ceil(rows.length / size));
}

/** n contiguous parts whose sizes differ by at most one row (the first B mod n one longer). */
function splitInto<T>(rows: T[], n: number): T[][] {
  const out: T[][] = [];
  let at = 0;
  for (let k = 0; k < n; k++) {
    const take = Math.floor(rows.length / n) + (k < rows.length % n ? 1 : 0);
    out.push(rows.slice(at, at + take));
    at += take;
  }
  return out;
}

/**
 * The rows of PPO epoch `epoch` of step `step` in a seeded order: a Fisher–Yates shuffle whose draws
 * are the counter RNG's at (seed; 'ppo-minibatch', step, epoch), so a retried activity, on any
 * machine, orders them the same.
 */
export function epochOrder<T>(rows: readonly T[], seed: number, step: number, epoch: number): T[] {
  const rng = new CounterRng(seed, 'ppo-minibatch', step, epoch);
  const out = [...rows];
  for (let i = out.length - 1; i > 0; i--) {
    const j = rng.int(i, i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/**
 * Per-row logprobs of `rows` under the engine's installed weights at `temperature`, scored in the
 * micro-batches of the whole batch (padded to t): one Float32Array of length t per row.
 */
async function scoreRows(
  engine: ModelEngine,
  rows: Row[],
  t: number,
  microBatchSize: number,
  temperature: number,
  report: (k: number, of: number) => void,
  signal: AbortSignal,
): Promise<Float32Array[]> {
  const out: Float32Array[] = [];
  const parts = splitRows(rows, microBatchSize);
  for (const [k, part] of parts.entries()) {
    report(k, parts.length);
    const batch = toBatch(part, t);
    const sc = await engine.score({ ids: batch.ids, attentionMask: batch.attentionMask }, { entropy: false, temperature, signal });
    part.forEach((_, i) => out.push(sc.logprobs.slice(i * t, (i + 1) * t)));
  }
  return out;
}

/** The loss-masked positions of scored logprobs, 0 elsewhere (the layout of `Row.oldLogprobs`). */
const maskedLogprobs = (row: Row, scored: Float32Array) => row.lossMask.map((m, j) => (m ? scored[j]! : 0));

/**
 * The rollout/learner mismatch over every loss token: mean |x| and the mean k3 estimate
 * e^x − 1 − x of KL(π_rollout ‖ π_learner), x = log π_learner − log π_rollout (clamped to ±20, the
 * estimate to 10, as the loss's guards).
 */
function mismatch(
  rows: Row[],
  learner: Float32Array[],
  rollout: (r: Row) => number[],
): { mismatch_logprob_diff: number; mismatch_kl: number } {
  let diff = 0;
  let kl = 0;
  let n = 0;
  rows.forEach((row, i) => {
    const behaviour = rollout(row);
    row.lossMask.forEach((m, j) => {
      if (!m) return;
      const x = Math.min(20, Math.max(-20, learner[i]![j]! - behaviour[j]!));
      diff += Math.abs(x);
      kl += Math.min(10, Math.exp(x) - 1 - x);
      n++;
    });
  });
  return { mismatch_logprob_diff: n > 0 ? diff / n : 0, mismatch_kl: n > 0 ? kl / n : 0 };
}

const pad = (xs: readonly number[], t: number, v = 0) => (xs.length === t ? [...xs] : [...xs, ...new Array<number>(t - xs.length).fill(v)]);

function toBatch(rows: Row[], t: number): TrainBatch {
  return {
    ids: rows.map((r) => pad(r.ids, t)),
    attentionMask: rows.map((r) =>
      pad(
        r.ids.map(() => 1),
        t,
      ),
    ),
    lossMask: rows.map((r) => pad(r.lossMask, t)),
  };
}

// ── the activity ────────────────────────────────────────────────────────────────────────────────

/**
 * The metrics of a committed step's metrics.arrow, named like the engine's (for a learner that
 * finds its work done): the loss columns, and every `extra` value under its own name (the step's
 * row keeps the learner's metrics there by name: workflows/step-metrics.ts).
 */
async function committedMetrics(store: ObjectStore, runId: string, step: number): Promise<Record<string, number>> {
  const prefix = stepPrefix(runId, step);
  const manifest = await readManifest(store, prefix);
  const entry = manifest?.artifacts.find((e) => e.name === METRICS_NAME);
  if (!entry) return {};
  const row = decodeMetrics(await readEntry(store, prefix, entry))[0];
  if (!row) return {};
  const out: Record<string, number> = {};
  const put = (k: string, v: number | null | undefined) => {
    if (v != null) out[k] = v;
  };
  put('loss', row.loss);
  put('grad_norm', row.grad_norm);
  put('kl', row.kl);
  put('entropy', row.entropy);
  put('clip_frac', row.clip_fraction);
  for (const [k, v] of Object.entries(row.extra)) put(k, v);
  return out;
}

/**
 * One optimizer update of step `step`: trains checkpoint `step` on the step's batch and writes
 * (does not commit) checkpoint `step + 1`.
 */
export async function learnerUpdate(input: LearnerInput): Promise<LearnerResult> {
  return stage('learnerUpdate', input.storeUri, async (ctx) => {
    const { progress, store, signal } = ctx;
    const t0 = performance.now();
    const { runId, step } = input;
    const next = checkpointPrefix(runId, step + 1);
    const done = await readManifest(store, next);
    if (done) {
      log.info({ runId, step }, `checkpoint ${step + 1} already committed: nothing to compute`);
      return {
        checkpoint: done.artifacts,
        metrics: await committedMetrics(store, runId, step),
        sequences: 0,
        tokens: 0,
        microBatches: 0,
        seconds: 0,
      };
    }

    const { run } = await loadRun(store, runId);
    const { config } = run;
    const phase = config.phases[input.phaseIndex];
    if (!phase || phase.kind !== input.phase) {
      throw ApplicationFailure.nonRetryable(
        `learnerUpdate step ${step}: phaseIndex ${input.phaseIndex} is ${phase ? `a ${phase.kind} phase` : 'not a phase of the run'}, but the input says ${input.phase} (the run has ${config.phases.length} phases)`,
        'BadLearnerInput',
      );
    }
    if (!Number.isFinite(input.lr) || input.lr < 0) {
      throw ApplicationFailure.nonRetryable(
        `learnerUpdate step ${step}: lr must be a finite number >= 0, got ${input.lr}`,
        'BadLearnerInput',
      );
    }
    const cached = engines.slot(store.root, runId, run);
    const { engine } = cached;

    // the starting state: the one this process just produced when it is what was committed, else from the store
    progress({ phase: 'load', checkpoint: step });
    const from = await readManifest(store, checkpointPrefix(runId, step));
    if (!from) {
      const have = await committedSteps(store, runId, 'checkpoints');
      throw ApplicationFailure.nonRetryable(
        `run "${runId}" has no committed checkpoint ${step} to train step ${step} from (committed checkpoints: ${have.join(', ') || 'none'})`,
        'CheckpointMissing',
      );
    }
    let state: TrainState;
    if (cached.last && cached.last.version === step && cached.last.shas === shasOf(from.artifacts)) state = cached.last.state;
    else {
      state = await loadTrainState(store, runId, step);
      assertFiniteState(state, step, true);
    }

    /** The end of a step that trains on pairs (dpo, online_dpo, reward_model): write checkpoint step + 1 and report. */
    const writePairUpdate = async (r: {
      state: TrainState;
      metrics: Record<string, number>;
      sequences: number;
      tokens: number;
      microBatches: number;
    }): Promise<LearnerResult> => {
      crashPoint('learner', step);
      assertFiniteState(r.state, step, false);
      progress({ phase: 'write', checkpoint: step + 1 });
      const checkpoint: ManifestEntry[] = await writeCheckpoint(store, runId, step + 1, r.state, {
        rolloutWeights: config.rollout.weights,
      });
      cached.last = { version: step + 1, shas: shasOf(checkpoint), state: r.state };
      const seconds = (performance.now() - t0) / 1000;
      log.info({ runId, step, phase: phase.kind, pairs: r.metrics.pairs, loss: r.metrics.loss, seconds }, 'learner update written');
      return { checkpoint, metrics: r.metrics, sequences: r.sequences, tokens: r.tokens, microBatches: r.microBatches, seconds };
    };

    // preference phases (online_dpo, dpo): one DPO update on pairs (preference-update.ts)
    if (phase.kind === 'online_dpo' || phase.kind === 'dpo') {
      const referenceWeights = async (v: number) => {
        if (cached.reference?.version !== v)
          cached.reference = { version: v, weights: await loadReferenceWeights(store, runId, v, run.model) };
        return cached.reference.weights;
      };
      const r = await preferenceUpdate({
        store,
        run,
        input,
        phase,
        engine,
        state,
        referenceWeights,
        optimizer: config.optimizer,
        microBatchSize: config.learner.microBatchSize,
        progress,
      });
      return writePairUpdate(r);
    }

    // reward_model: one Bradley-Terry update of the classifier on dataset pairs (reward-model-update.ts)
    if (phase.kind === 'reward_model') {
      const r = await rewardModelUpdate({
        run,
        input,
        phase,
        engine,
        state,
        optimizer: config.optimizer,
        microBatchSize: config.learner.microBatchSize,
        progress,
      });
      return writePairUpdate(r);
    }

    // the batches: one per optimizer update (sft steps may hold several; rl: ppoEpochs × miniBatches, below)
    const lrs = phase.kind === 'sft' && input.lrs && input.lrs.length > 0 ? input.lrs : [input.lr];
    if (lrs.some((x) => !Number.isFinite(x) || x < 0)) {
      throw ApplicationFailure.nonRetryable(
        `learnerUpdate step ${step}: lrs must be finite numbers >= 0, got ${JSON.stringify(lrs)}`,
        'BadLearnerInput',
      );
    }
    let updates: { rows: Row[]; lr: number; epoch: number }[];
    let rlBatch: Row[] = [];
    let dropped = 0;
    let loss: LossBuilder;
    let tokenMean = false;
    let klReference = false;
    let referenceRead = false;
    let tis = false;
    if (phase.kind === 'sft') {
      updates = lrs.map((lr, u) => ({
        rows: sftRows(run, { ...input, promptOffset: input.promptOffset + u * input.batchSize }),
        lr,
        epoch: 0,
      }));
      loss = buildLoss({ name: 'sft', options: { entropyMetric: true } });
    } else {
      // kl.inReward: the reference logprobs the advantage stage charged (scoreReferenceLogprobs) are
      // the loss's ref_logprobs (its kl metric): the reference is not scored a second time
      const inReward = surrogateOptions(phase, input.phaseIndex).kl?.inReward === true && input.referenceLogprobs !== undefined;
      let stepReference: Map<string, ArrayLike<number>> | undefined;
      if (inReward) {
        const prefix = stepPrefix(runId, step);
        const refRows = decodeReferenceLogprobs(
          await readEntry(store, prefix, input.referenceLogprobs!),
          store.uri(`${prefix}/${input.referenceLogprobs!.key}`),
        );
        stepReference = new Map(refRows.map((r) => [rowKey(r), r.ref_logprobs]));
      }
      const rl = await rlRows(store, input, phase, progress, stepReference);
      referenceRead = inReward;
      rlBatch = rl.rows;
      updates = [];
      dropped = rl.dropped;
      const options = { ...surrogateOptions(phase, input.phaseIndex) };
      if (rl.tokenAdv) options.advantages = 'token';
      tokenMean = (options.aggregation ?? 'token_mean') === 'token_mean'; // parseRunConfig pairs it with the estimator; unset is the loss's own default
      if (tokenMean) options.globalTokenCount = true;
      klReference = options.kl !== null;
      tis = options.tis !== null;
      loss = buildLoss({ name: 'clipped_surrogate', options });
    }

    // rl: logprobs, KL and entropy of the distribution the rollouts were sampled from, softmax(logits / T)
    const temperature = phase.kind === 'rl' ? phase.sampling.temperature : 1;

    let reference: WeightMap | null = null;
    if (klReference && !referenceRead) {
      const ref = input.referenceVersion;
      if (ref === null || !Number.isSafeInteger(ref) || ref < 0 || ref > step) {
        throw ApplicationFailure.nonRetryable(
          `learnerUpdate step ${step}: phases.${input.phaseIndex}.loss has a KL term but referenceVersion is ${JSON.stringify(ref)}; give the checkpoint where the rl phase started (0..${step})`,
          'BadLearnerInput',
        );
      }
      if (cached.reference?.version !== ref)
        cached.reference = { version: ref, weights: await loadReferenceWeights(store, runId, ref, run.model) };
      reference = cached.reference.weights;
    }

    // rl: what is scored once before the first update, then the updates (epochs × mini-batches)
    const epochs = phase.kind === 'rl' ? phase.ppoEpochs : 1;
    let rlMismatch: ReturnType<typeof mismatch> | null = null;
    if (phase.kind === 'rl' && rlBatch.length > 0) {
      const rows = rlBatch;
      const perEpoch = Math.min(phase.miniBatches, rows.length);
      const t = Math.max(...rows.map((r) => r.ids.length));
      if (reference) {
        engine.setWeights(reference, `reference:${input.referenceVersion}`);
        const scored = await scoreRows(
          engine,
          rows,
          t,
          config.learner.microBatchSize,
          temperature,
          (k, of) => progress({ phase: 'reference logprobs', microBatch: k + 1, of }),
          signal,
        );
        rows.forEach((r, i) => (r.refLogprobs = scored[i]));
      }
      if (tis || epochs * perEpoch > 1) {
        // the learner's logprobs of the sampling policy (checkpoint `step`), before any update
        engine.setWeights(state.params, `policy:${step}`);
        const scored = await scoreRows(
          engine,
          rows,
          t,
          config.learner.microBatchSize,
          temperature,
          (k, of) => progress({ phase: 'policy logprobs', microBatch: k + 1, of }),
          signal,
        );
        rlMismatch = mismatch(rows, scored, (r) => r.oldLogprobs!);
        if (tis) {
          rows.forEach((r, i) => {
            r.rolloutLogprobs = r.oldLogprobs;
            r.oldLogprobs = maskedLogprobs(r, scored[i]!);
          });
        }
      }
      for (let e = 0; e < epochs; e++) {
        const order = perEpoch > 1 ? epochOrder(rows, config.seed, step, e) : rows;
        for (const mini of splitInto(order, perEpoch)) updates.push({ rows: mini, lr: input.lr, epoch: e });
      }
    }

    let newState: TrainState = state;
    const sums: Record<string, number> = {};
    const lastEpoch: Record<string, number> = {};
    let applied = 0;
    let appliedLast = 0;
    let sequences = 0;
    let tokens = 0;
    let microBatches = 0;
    for (const [u, { rows, lr, epoch }] of updates.entries()) {
      if (rows.length === 0) continue;
      const rowTokens = rows.reduce((n, r) => n + r.lossMask.reduce((a, b) => a + b, 0), 0);
      const t = Math.max(...rows.map((r) => r.ids.length));
      const parts = splitRows(rows, config.learner.microBatchSize);
      const batches = parts.map((part) => ({ part, batch: toBatch(part, t) }));
      if (phase.kind === 'rl') {
        for (const { part, batch } of batches) {
          const extra: Record<string, ExtraValue> = {
            old_logprobs: part.map((r) => pad(r.oldLogprobs!, t)),
            advantages: part.map((r) => (typeof r.advantage === 'number' ? r.advantage : pad(r.advantage!, t))) as ExtraValue,
          };
          // token mean over this update's (mini-batch's) tokens
          if (tokenMean) extra.loss_token_count = rowTokens / parts.length;
          if (tis) extra.rollout_logprobs = part.map((r) => pad(r.rolloutLogprobs!, t));
          if (reference || referenceRead) {
            const data = new Float32Array(part.length * t);
            part.forEach((r, i) => data.set(r.refLogprobs!.subarray(0, t), i * t));
            extra.ref_logprobs = { data, dims: [part.length, t] };
          }
          batch.extra = extra;
        }
      }
      const train = {
        phase: 'train',
        update: u + 1,
        of: updates.length,
        epoch: epoch + 1,
        microBatches: parts.length,
        sequences: rows.length,
        tokens: rowTokens,
      };
      progress({ ...train, microBatchesDone: 0 });
      // the state is this process's own from here on: moved to the engine's worker, not copied
      // (its arrays are unusable afterwards, so nothing may keep it for a later activity)
      cached.last = null;
      const r = await engine.trainStep(
        newState,
        batches.map((b) => b.batch),
        {
          loss,
          lr,
          optimizer: config.optimizer,
          temperature,
          signal,
          moveState: true,
          onProgress: (done) => progress({ ...train, microBatchesDone: Math.min(done, parts.length) }), // then the update's run
        },
      );
      newState = r.state;
      for (const [name, v] of Object.entries(r.metrics)) sums[name] = (sums[name] ?? 0) + v;
      if (epoch === epochs - 1) {
        for (const [name, v] of Object.entries(r.metrics)) lastEpoch[name] = (lastEpoch[name] ?? 0) + v;
        appliedLast++;
      }
      applied++;
      sequences += rows.length;
      tokens += rowTokens;
      microBatches += parts.length;
    }
    // metrics: means over the step's updates; none applied when every sample was dropped (e.g. all
    // groups without reward variance): the checkpoint is carried over unchanged, one per step
    const metrics: Record<string, number> =
      applied === 0 ? { skipped: 1 } : Object.fromEntries(Object.entries(sums).map(([k, v]) => [k, v / applied]));
    if (applied === 0) log.warn({ runId, step, dropped }, 'no sample enters the loss: the update is skipped');
    if (phase.kind === 'rl' && applied > 0) {
      metrics.updates = applied;
      if (epochs > 1 && appliedLast > 0) {
        if (lastEpoch.clip_frac !== undefined) metrics.clip_frac_last_epoch = lastEpoch.clip_frac / appliedLast;
        if (lastEpoch.ratio_mean !== undefined) metrics.ratio_mean_last_epoch = lastEpoch.ratio_mean / appliedLast;
      }
      // the rollout/learner mismatch: over the whole batch when scored, else the one update's own
      if (rlMismatch) Object.assign(metrics, rlMismatch);
      else {
        if (metrics.logprob_diff !== undefined) metrics.mismatch_logprob_diff = metrics.logprob_diff;
        if (metrics.approx_kl !== undefined) metrics.mismatch_kl = metrics.approx_kl;
      }
    }
    crashPoint('learner', step);
    assertFiniteState(newState, step, false);

    progress({ phase: 'write', checkpoint: step + 1 });
    const checkpoint: ManifestEntry[] = await writeCheckpoint(store, runId, step + 1, newState, { rolloutWeights: config.rollout.weights });
    cached.last = { version: step + 1, shas: shasOf(checkpoint), state: newState };
    const seconds = (performance.now() - t0) / 1000;
    log.info(
      { runId, step, sequences, updates: applied, dropped, tokens, microBatches, loss: metrics.loss, seconds },
      'learner update written',
    );
    return { checkpoint, metrics, sequences, tokens, microBatches, seconds };
  });
}
