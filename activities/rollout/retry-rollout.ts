/**
 * Reflect-then-retry rollouts (R^3L, 2026, "R^3L: Reflect-then-Retry Reinforcement Learning with
 * Language-Guided Exploration, Pivotal Credit, and Positive Amplification"), the rl phase's `retry`
 * option. After a prompt's groupSize samples are drawn and scored with the run's reward, each failed
 * sample (reward below the r3l estimator's successThreshold; a sample whose reward failed is not
 * retried) gets one retry that restarts from its failure point p:
 *
 *   retry completion = failed tokens [0, p) with their behaviour logprobs, copied
 *                    + tokens sampled from prompt (+ reflection) + failed tokens [0, p)
 *
 * The failure point: the task's `firstError(item, text)` (activities/tasks/types.ts; addition: the
 * first character that leaves every accepted answer) mapped to the token holding that character —
 * the stop token when the answer ended too early. Where the task cannot say (no hook, null, or a
 * position past the completion), the option's `fallback`: `min_logprob`, the token the policy was
 * least sure of (lowest behaviour logprob, first on ties), or `start` (position 0).
 *
 * Rows: a retry is an extra row of the prompt's group with sample_id groupSize + k (k-th retry of
 * the prompt, failures in sample order). Every row of a group carries node_id `{prompt_id}/{sample_id}`;
 * a retry has parent_node_id = the failed sample's node and branch_position = p (the rollouts
 * contract of tree rollouts: tokens [0, branch_position) are the parent's, copied). A retry from
 * p = 0 shares no token with the failure; the contract has no child without a copied token, so it
 * is written as a fresh sample (parent_node_id null, branch_position 0) and Pivotal Credit has
 * nothing to mask for it. The advantage stage pairs each retry with its parent (`AdvantageBatch.pairs`).
 *
 * Language feedback: the paper has the policy reflect in words on the failure and retries with that
 * reflection in context. `reflection` (a template; null by default) is inserted between the prompt
 * and the copied prefix of the retry's decoding context, with `{completion}` replaced by the failed
 * completion's text and `{pivot}` by p; the row keeps the original prompt, so the learner trains the
 * retry as if sampled without it (the paper's off-policy retries; their behaviour logprobs are under
 * the reflected context). The tiny character-level models trained from scratch here have never seen
 * such text: for them a hint is noise, which is why it is off by default; without it the retry's
 * tokens are exactly on-policy.
 *
 * Determinism: the policy and the reward are injected (`RetryRolloutDeps`); a retry's tokens are
 * drawn from the stream keyed by (seed, step, prompt_id, its node id) at the absolute completion
 * position, and the failure point is a pure function of the failed sample, so a retried shard
 * writes the same bytes when the reward is deterministic.
 */

/** The rl phase's `retry` option (declared and documented in activities/run/config.ts). */
export interface RetryRolloutOptions {
  /** Most retries per prompt (failures in sample order); null: every failed sample. */
  maxPerGroup: number | null;
  /** Failure point where the task cannot say: lowest behaviour logprob, or the start. */
  fallback: 'min_logprob' | 'start';
  /** Reflection template inserted into the retry's context, or null (off). */
  reflection: string | null;
}

/** A completion after its stop conditions, as the rollout stage writes it. */
export interface RetryCompletion {
  tokens: number[];
  logprobs: number[];
  text: string;
  finishReason: 'stop' | 'length';
}

/** One sampled completion of a prompt (sample id = its index in the group). */
export interface RetrySource {
  completion: RetryCompletion;
}

/** One retry to decode: prompt `group`'s tokens (+ reflection) + `prefix.tokens`, from completion position `prefix.tokens.length`. */
export interface RetryDecodeJob {
  group: number;
  nodeId: string;
  /** The sample id of the retry's random stream: its node id. */
  streamKey: string;
  /** Reflection text to insert after the prompt, or null. */
  reflection: string | null;
  /** The failed sample's tokens [0, p) and their behaviour logprobs. */
  prefix: { tokens: readonly number[]; logprobs: readonly number[] };
}

export interface RetryRolloutDeps {
  /** Rewards of the samples (null: the reward failed), per group in sample order. */
  score(groups: readonly (readonly RetrySource[])[]): Promise<(number | null)[][]>;
  /** The task's failure point of a completion text of prompt `group` (character index), or null; absent when the task has no hook. */
  firstError?: (group: number, text: string) => number | null;
  /** The completion text of a token prefix (as the completion's `text` is decoded, stop tokens left out). */
  text(tokens: readonly number[]): string;
  /** Whether a token id ends a completion (its text is empty). */
  isStop(token: number): boolean;
  /** Decodes every job; results in job order, each the retry's WHOLE completion (the prefix unchanged first). */
  decode(jobs: readonly RetryDecodeJob[]): Promise<RetryCompletion[]>;
}

/** One row of a group after retries: an original sample or a retry. */
export interface RetryRolloutNode {
  group: number;
  sampleId: number;
  nodeId: string;
  parentNodeId: string | null;
  branchPosition: number;
  completion: RetryCompletion;
  /** Retries only: where the failure point came from. */
  pivotFrom?: 'task' | 'min_logprob' | 'start';
}

export interface RetryRolloutResult {
  /** Rows by prompt: its groupSize samples, then its retries. */
  nodes: RetryRolloutNode[];
  /** Rewards of the original samples (the reward stage scores every row again). */
  rewards: (number | null)[][];
  retries: number;
  /** Retries whose failure point came from the task / from the fallback. */
  taskPivots: number;
  fallbackPivots: number;
}

export class RetryError extends Error {
  override name = 'RetryError';
}

/** Node id of sample `sampleId` of prompt `promptId`. */
export const retryNodeId = (promptId: string, sampleId: number) => `${promptId}/${sampleId}`;

/**
 * The token of `tokens` that holds character `charPos` of the completion text: the first t whose
 * prefix [0, t] decodes past charPos. A position at or past the text's end maps to the stop token
 * that ended the completion (the answer stopped too early); null when there is none (truncated).
 */
export function tokenAtChar(
  tokens: readonly number[],
  charPos: number,
  text: (tokens: readonly number[]) => string,
  isStop: (token: number) => boolean,
): number | null {
  if (!Number.isInteger(charPos) || charPos < 0) return null;
  for (let t = 0; t < tokens.length; t++) {
    if (isStop(tokens[t]!)) return charPos >= text(tokens.slice(0, t)).length ? t : null;
    if (text(tokens.slice(0, t + 1)).length > charPos) return t;
  }
  return null;
}

/** Position of the lowest behaviour logprob (first on ties); 0 for an empty completion. */
export function minLogprobPosition(logprobs: readonly number[]): number {
  let best = 0;
  for (let t = 1; t < logprobs.length; t++) if (logprobs[t]! < logprobs[best]!) best = t;
  return best;
}

/** The failure point of a failed completion and where it came from (see the file comment). */
export function failurePoint(
  c: RetryCompletion,
  options: Pick<RetryRolloutOptions, 'fallback'>,
  deps: Pick<RetryRolloutDeps, 'text' | 'isStop'>,
  firstError: ((text: string) => number | null) | null,
): { pivot: number; from: 'task' | 'min_logprob' | 'start' } {
  const at = firstError ? firstError(c.text) : null;
  if (at !== null) {
    const t = tokenAtChar(c.tokens, at, deps.text, deps.isStop);
    if (t !== null && t < c.tokens.length) return { pivot: t, from: 'task' };
  }
  if (options.fallback === 'start' || c.tokens.length === 0) return { pivot: 0, from: 'start' };
  return { pivot: minLogprobPosition(c.logprobs), from: 'min_logprob' };
}

/** Fills a reflection template: `{completion}` → the failed text, `{pivot}` → the failure point. */
export function reflectionText(template: string, failed: RetryCompletion, pivot: number): string {
  return template.replaceAll('{completion}', failed.text).replaceAll('{pivot}', String(pivot));
}

/**
 * Scores each prompt's samples, finds the failed ones and decodes one retry for each (up to
 * maxPerGroup per prompt); returns every row of the shard with node ids (see the file comment).
 */
export async function rolloutRetries(
  groupIds: readonly string[],
  groups: readonly (readonly RetrySource[])[],
  options: RetryRolloutOptions,
  successThreshold: number,
  deps: RetryRolloutDeps,
): Promise<RetryRolloutResult> {
  if (groups.length !== groupIds.length) throw new RetryError(`${groups.length} groups for ${groupIds.length} prompt ids`);
  const rewards = await deps.score(groups);
  if (rewards.length !== groups.length || rewards.some((r, g) => r.length !== groups[g]!.length)) {
    throw new RetryError('score returned a different number of rewards than samples');
  }
  const jobs: RetryDecodeJob[] = [];
  const meta: { group: number; sampleId: number; parent: string; pivot: number; from: 'task' | 'min_logprob' | 'start' }[] = [];
  groups.forEach((samples, g) => {
    let k = 0;
    samples.forEach((s, i) => {
      const r = rewards[g]![i];
      if (r === null || r === undefined || r >= successThreshold) return;
      if (options.maxPerGroup !== null && k >= options.maxPerGroup) return;
      const c = s.completion;
      const { pivot, from } = failurePoint(c, options, deps, deps.firstError ? (text) => deps.firstError!(g, text) : null);
      const sampleId = samples.length + k++;
      const nodeId = retryNodeId(groupIds[g]!, sampleId);
      jobs.push({
        group: g,
        nodeId,
        streamKey: nodeId,
        reflection: options.reflection === null ? null : reflectionText(options.reflection, c, pivot),
        prefix: { tokens: c.tokens.slice(0, pivot), logprobs: c.logprobs.slice(0, pivot) },
      });
      meta.push({ group: g, sampleId, parent: retryNodeId(groupIds[g]!, i), pivot, from });
    });
  });
  const decoded = jobs.length > 0 ? await deps.decode(jobs) : [];
  if (decoded.length !== jobs.length) throw new RetryError(`decode returned ${decoded.length} completions for ${jobs.length} retries`);
  decoded.forEach((c, j) => {
    const p = jobs[j]!.prefix.tokens.length;
    if (c.logprobs.length !== c.tokens.length)
      throw new RetryError(`retry "${jobs[j]!.nodeId}": ${c.tokens.length} tokens but ${c.logprobs.length} logprobs`);
    for (let t = 0; t < p; t++) {
      if (c.tokens[t] !== jobs[j]!.prefix.tokens[t] || c.logprobs[t] !== jobs[j]!.prefix.logprobs[t]) {
        throw new RetryError(`retry "${jobs[j]!.nodeId}": decode changed the copied prefix at position ${t}`);
      }
    }
    if (c.tokens.length <= p) throw new RetryError(`retry "${jobs[j]!.nodeId}" sampled no token after its failure point ${p}`);
  });

  const nodes: RetryRolloutNode[] = [];
  let taskPivots = 0;
  groups.forEach((samples, g) => {
    samples.forEach((s, i) =>
      nodes.push({
        group: g,
        sampleId: i,
        nodeId: retryNodeId(groupIds[g]!, i),
        parentNodeId: null,
        branchPosition: 0,
        completion: s.completion,
      }),
    );
    meta.forEach((m, j) => {
      if (m.group !== g) return;
      if (m.from === 'task') taskPivots++;
      const child = m.pivot > 0;
      nodes.push({
        group: g,
        sampleId: m.sampleId,
        nodeId: jobs[j]!.nodeId,
        parentNodeId: child ? m.parent : null,
        branchPosition: child ? m.pivot : 0,
        completion: decoded[j]!,
        pivotFrom: m.from,
      });
    });
  });
  return { nodes, rewards, retries: jobs.length, taskPivots, fallbackPivots: jobs.length - taskPivots };
}
