/**
 * The reference-scoring activity of an rl step whose loss has `kl.inReward` (learner queue):
 * `scoreReferenceLogprobs` scores every rollout row of the step under the phase's reference
 * checkpoint, at the phase's sampling temperature, and writes `REFERENCE_LOGPROBS_NAME` under the
 * step prefix: one row per rollout row, in shard order, one logprob per completion token.
 *
 *   rollouts (every shard so far) ──► engine.score under checkpoint referenceVersion at T ──► reference_logprobs.arrow
 *
 * Why a stage of its own: REINFORCE++ (Hu et al. 2025) charges each token r_t − β·kl_t *before* the
 * returns are computed, so the advantage stage needs log π_ref of the step's completions; the learner
 * scores the reference only after the advantages. This is the reference-policy pass verl and
 * OpenRLHF run between generation and the advantages. computeStepAdvantages reads the artifact
 * (activities/advantage/step-kl-reward.ts), the learner feeds it to the loss's `kl` metric instead
 * of scoring again (learner-update.ts), and the step commits it with its other artifacts.
 *
 * The learner queue holds the weights: the activity uses the learner's engine of the run and its
 * cached reference weights (`referenceEngine` in learner-update.ts), so the reference is loaded once
 * per phase per process. Sequences (prompt + completion) are scored in micro-batches of the run's
 * `learner.microBatchSize`, right-padded to the micro-batch's longest, as the learner scores;
 * logprobs are those of softmax(logits / T), T the phase's `sampling.temperature` (0, greedy, is
 * scored at 1), the distribution the behaviour logprobs were recorded from. Heartbeats report the
 * micro-batches done.
 *
 * Idempotent: on a committed step the committed artifact is returned without scoring. Bad input
 * (a phase that is not rl or has no `kl.inReward`, a reference version outside 0..step, no
 * rollouts) fails at once, naming what is wrong.
 */
import { ApplicationFailure } from '@temporalio/common';
import { logger } from '../common/log.js';
import { stage } from '../run/stage.js';
import { loadRun } from '../run/resolve.js';
import type { ReferenceLogprobsInput, ReferenceLogprobsResult } from '../run/types.js';
import { REFERENCE_LOGPROBS_NAME, stepPrefix } from '../store/keys.js';
import { manifestKey, readEntry, readManifest, writeArtifact } from '../store/manifest.js';
import {
  decodeReferenceLogprobs,
  decodeRollouts,
  encodeReferenceLogprobs,
  REFERENCE_LOGPROBS,
  type ReferenceLogprobsInput as ReferenceLogprobsRowInput,
  type RolloutsRow,
} from '../store/schemas.js';
import { referenceEngine } from './learner-update.js';

const log = logger('reference');

const badInput = (message: string) => ApplicationFailure.nonRetryable(message, 'BadReferenceInput');

/** Scores the step's rollouts under the reference checkpoint and writes (does not commit) `REFERENCE_LOGPROBS_NAME`. */
export async function scoreReferenceLogprobs(input: ReferenceLogprobsInput): Promise<ReferenceLogprobsResult> {
  return stage('referenceLogprobs', input.storeUri, async ({ store, progress }) => {
    const t0 = performance.now();
    const { runId, step } = input;
    const prefix = stepPrefix(runId, step);
    const seconds = () => (performance.now() - t0) / 1000;

    const committed = await readManifest(store, prefix);
    if (committed) {
      const entry = committed.artifacts.find((e) => e.name === REFERENCE_LOGPROBS_NAME);
      if (!entry)
        throw badInput(
          `${store.uri(manifestKey(prefix))} is committed without "${REFERENCE_LOGPROBS_NAME}" (a step without kl.inReward?); a committed step is never changed`,
        );
      const rows = decodeReferenceLogprobs(await readEntry(store, prefix, entry), store.uri(prefix));
      return {
        referenceLogprobs: entry,
        samples: rows.length,
        tokens: rows.reduce((n, r) => n + r.ref_logprobs.length, 0),
        seconds: seconds(),
      };
    }

    const { run } = await loadRun(store, runId);
    const phase = run.config.phases[input.phaseIndex];
    if (!phase) throw badInput(`phaseIndex ${input.phaseIndex} is out of range: the run has ${run.config.phases.length} phases`);
    if (phase.kind !== 'rl')
      throw badInput(
        `phase ${input.phaseIndex} is a "${phase.kind}" phase; reference logprobs are scored for the KL in an rl phase's reward`,
      );
    const kl = phase.loss.name === 'clipped_surrogate' ? phase.loss.options.kl : null;
    if (!kl?.inReward)
      throw badInput(
        `phases.${input.phaseIndex}.loss.options.kl.inReward is not set (kl is ${JSON.stringify(kl)}): only a phase that charges the KL in the reward scores reference logprobs before its advantages`,
      );
    const ref = input.referenceVersion;
    if (!Number.isSafeInteger(ref) || ref < 0 || ref > step)
      throw badInput(
        `referenceVersion is ${JSON.stringify(ref)}; give the checkpoint where the rl phase started (0..${step}) for step ${step}`,
      );
    if (input.rollouts.length === 0) throw badInput('no rollouts shards given: an rl step needs at least one');

    const rollouts: RolloutsRow[] = [];
    for (const e of input.rollouts) rollouts.push(...decodeRollouts(await readEntry(store, prefix, e), store.uri(`${prefix}/${e.key}`)));
    const temperature = phase.sampling.temperature;
    const recorded = temperature > 0 ? temperature : 1;
    const engine = await referenceEngine(store, runId, run, ref);

    // the rows with a completion, scored in micro-batches of the learner's size
    const scoredRows = rollouts.map((r, i) => ({ r, i })).filter(({ r }) => r.completion_token_ids.length > 0);
    const logprobs: Float32Array[] = rollouts.map(() => new Float32Array(0));
    const size = run.config.learner.microBatchSize;
    const parts = Math.ceil(scoredRows.length / size);
    let tokens = 0;
    for (let k = 0; k < parts; k++) {
      progress({ phase: 'reference logprobs', microBatch: k + 1, of: parts, referenceVersion: ref });
      const part = scoredRows.slice(k * size, (k + 1) * size);
      const seqs = part.map(({ r }) => [...r.prompt_token_ids, ...r.completion_token_ids]);
      const t = Math.max(...seqs.map((s) => s.length));
      const ids = seqs.map((s) => [...s, ...new Array<number>(t - s.length).fill(0)]);
      const attentionMask = seqs.map((s) => [...s.map(() => 1), ...new Array<number>(t - s.length).fill(0)]);
      const sc = await engine.score({ ids, attentionMask }, { entropy: false, temperature });
      part.forEach(({ r, i }, b) => {
        const p = r.prompt_token_ids.length;
        const n = r.completion_token_ids.length;
        logprobs[i] = sc.logprobs.slice(b * t + p, b * t + p + n);
        tokens += n;
      });
    }
    progress({ phase: 'write', of: parts });

    const rows: ReferenceLogprobsRowInput[] = rollouts.map((r, i) => ({
      run_id: r.run_id,
      step: r.step,
      prompt_id: r.prompt_id,
      sample_id: r.sample_id,
      node_id: r.node_id,
      reference_version: ref,
      temperature: recorded,
      ref_logprobs: logprobs[i]!,
    }));
    const entry = await writeArtifact(store, prefix, {
      name: REFERENCE_LOGPROBS_NAME,
      bytes: encodeReferenceLogprobs(rows),
      schema: REFERENCE_LOGPROBS,
    });
    log.info({ runId, step, referenceVersion: ref, samples: rows.length, tokens, seconds: seconds() }, 'reference logprobs written');
    return { referenceLogprobs: entry, samples: rows.length, tokens, seconds: seconds() };
  });
}
