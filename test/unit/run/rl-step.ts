/**
 * An rl step's data for learner tests, written by hand instead of sampled: per prompt of the task's
 * train split a gold completion and a wrong one (each digit + 3 mod 10), with chosen advantages and
 * loss masks, and behaviour logprobs scored under checkpoint 0 at the phase's temperature — the
 * logprobs an exact rollout engine would have recorded (tests perturb them to play a different one).
 */
import { loadWeights } from '../../../activities/checkpoint/checkpoint.js';
import { ModelEngine } from '../../../activities/model/engine.js';
import type { ResolvedRun } from '../../../activities/run/resolve.js';
import { ADVANTAGES_NAME, rolloutsName, stepPrefix } from '../../../activities/store/keys.js';
import { writeArtifact, type ManifestEntry } from '../../../activities/store/manifest.js';
import type { ObjectStore } from '../../../activities/store/object-store.js';
import { ADVANTAGES, ROLLOUTS, encodeAdvantages, encodeRollouts } from '../../../activities/store/schemas.js';

export interface Sample {
  promptId: string;
  sampleId: number;
  prompt: number[];
  completion: number[];
  advantage: number;
  /** The advantages row's loss mask over the completion. */
  mask: boolean[];
}

/**
 * `prompts` prompts × (gold, A = +advantage; wrong, A = −advantage). With `partialMasks` every
 * other wrong answer trains on its first token only, so rows hold different numbers of loss tokens.
 */
export function goldAndWrong(run: ResolvedRun, prompts: number, advantage: number, partialMasks = false): Sample[] {
  const tok = run.tokenizer;
  const out: Sample[] = [];
  run.task.prompts(run.config.seed, 'train', prompts, 0).forEach((item, k) => {
    const prompt = run.encodePrompt(item.prompt);
    const gold = run.encodeCompletion(run.task.sftTarget(item));
    const wrong = gold.map((id, i) =>
      i < gold.length - 1 ? tok.encode(String((Number(tok.decode([id])) + 3) % 10), { addSpecialTokens: false })[0]! : id,
    );
    out.push({ promptId: item.promptId, sampleId: 0, prompt, completion: gold, advantage, mask: gold.map(() => true) });
    out.push({
      promptId: item.promptId,
      sampleId: 1,
      prompt,
      completion: wrong,
      advantage: -advantage,
      mask: wrong.map((_, j) => !partialMasks || k % 2 === 1 || j === 0),
    });
  });
  return out;
}

/** Each sample's completion-token logprobs under checkpoint `version` of `runId`, scored at `temperature`. */
export async function completionLogprobs(
  store: ObjectStore,
  runId: string,
  run: ResolvedRun,
  xs: Sample[],
  temperature: number,
  version = 0,
): Promise<number[][]> {
  const engine = new ModelEngine(run.model, { threads: 1 });
  try {
    engine.setWeights(await loadWeights(store, runId, version), String(version));
    const out: number[][] = [];
    for (const x of xs) {
      const s = await engine.score({ ids: [[...x.prompt, ...x.completion]] }, { entropy: false, temperature });
      out.push([...s.logprobs].slice(x.prompt.length));
    }
    return out;
  } finally {
    await engine.close();
  }
}

/** Writes step `step`'s rollouts (one shard) and advantages; `behaviour[i]` are sample i's behaviour logprobs. */
export async function writeRlStep(
  store: ObjectStore,
  runId: string,
  run: ResolvedRun,
  xs: Sample[],
  behaviour: number[][],
  step = 0,
): Promise<{ rollouts: ManifestEntry[]; advantages: ManifestEntry }> {
  const prefix = stepPrefix(runId, step);
  const tok = run.tokenizer;
  const rows = xs.map((x, i) => ({
    run_id: runId,
    step,
    prompt_id: x.promptId,
    sample_id: x.sampleId,
    group_id: x.promptId,
    policy_version: step,
    prompt_text: tok.decode(x.prompt, { skipSpecialTokens: true }),
    prompt_token_ids: x.prompt,
    completion_text: tok.decode(x.completion, { skipSpecialTokens: true }),
    completion_token_ids: x.completion,
    behaviour_logprobs: behaviour[i]!,
    finish_reason: 'stop' as const,
  }));
  const adv = xs.map((x) => ({
    run_id: runId,
    step,
    prompt_id: x.promptId,
    sample_id: x.sampleId,
    advantage: x.advantage,
    loss_mask: x.mask,
  }));
  return {
    rollouts: [await writeArtifact(store, prefix, { name: rolloutsName(0), bytes: encodeRollouts(rows), schema: ROLLOUTS })],
    advantages: await writeArtifact(store, prefix, { name: ADVANTAGES_NAME, bytes: encodeAdvantages(adv), schema: ADVANTAGES }),
  };
}
