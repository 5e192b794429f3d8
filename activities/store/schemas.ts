/**
 * The data contracts: one table schema per kind of step artifact, plus the input of offline
 * reward annotation. The column reference of docs/data-contracts.md is generated from these
 * declarations (`npx tsx activities/store/schemas-doc.ts` rewrites it) and a unit test keeps the
 * two in step.
 *
 * Row keys: (run_id, step, prompt_id, sample_id); tree rollouts add node_id, parent_node_id and
 * branch_position.
 * Column names are snake_case everywhere (Arrow, TypeScript rows, docs), one name per concept.
 */
import { defineTable, readTable, writeTable, type RowInput, type RowOf } from './arrow.js';

const runId = { kind: 'utf8', doc: 'Run id (the workflow id of the training run, or of the job for offline annotation).' } as const;
const step = { kind: 'int32', doc: 'Training step the row belongs to (0-based); offline jobs use 0.' } as const;
const promptId = {
  kind: 'utf8',
  doc: 'Stable id of the prompt in its dataset (also a coordinate of the sampling RNG, activities/common/rng.ts).',
} as const;
const sampleId = {
  kind: 'int32',
  doc: "Index of the sample among the samples drawn for this prompt in this step (0..G-1 for a group of G); for tree rollouts, the index of the node within the prompt's tree.",
} as const;
const nodeId = {
  kind: 'utf8',
  nullable: true,
  doc: 'Tree rollouts only: id of the tree node this row is (unique within the prompt\'s tree, e.g. "0.2.1"); null for flat (non-tree) rollouts.',
} as const;
const parentNodeId = {
  kind: 'utf8',
  nullable: true,
  doc: 'Tree rollouts only: node_id of the parent node; null for a root node and for flat rollouts.',
} as const;

/** The roles of an episode's segments (rollouts.segment_roles): who produced the tokens. */
export const SEGMENT_ROLES = ['policy', 'observation', 'glue'] as const;
export type SegmentRole = (typeof SEGMENT_ROLES)[number];

/** How an episode ended besides "stop" (a final answer) and "length" (its token budget). */
export const EPISODE_FINISH_REASONS = ['max_turns', 'max_seconds', 'tool_failure'] as const;

/** Rollouts: one row per generated sample (flat sampling) or per tree node (tree sampling). */
export const ROLLOUTS = defineTable({
  name: 'rollouts',
  version: 3,
  readsVersions: [1, 2],
  doc: "One generated sample (flat GRPO-style sampling) or one node of a sampling tree (tree sampling: the rl phase's `tree` option, V-STAR's value-guided tree decoding). Every tree node is a complete completion: a child of node X at branch_position p holds X's completion tokens [0, p) and their behaviour logprobs unchanged, then the tokens it sampled itself from p on (decoded from prompt + X's tokens [0, p)). R^3L retries (the rl phase's `retry` option) use the same fields: every sample has node_id {prompt_id}/{sample_id}, and a retry (sample_id groupSize + k) is the child of the failed sample it retries, at branch_position = the failure point. A multi-turn episode (the run's `environment` option; activities/rollout/episode.ts) is one row too: its completion is every token after the prompt — the policy's turns exactly as sampled, and between them the observation segments the environment appended (tool results and the chat template's glue, tokenised once and never re-tokenised) — cut into segments (segment_ends, segment_roles, segment_turns) with loss_mask false and behaviour logprob 0 on every token the policy did not sample. Version 2 added branch_position, version 3 the episode columns; files of versions 1 and 2 still read, with those columns null.",
  columns: {
    run_id: runId,
    step,
    prompt_id: promptId,
    sample_id: sampleId,
    group_id: {
      kind: 'utf8',
      doc: 'Group over which group-relative advantages are computed (GRPO, Shao et al. 2024); usually equal to prompt_id.',
    },
    node_id: nodeId,
    parent_node_id: parentNodeId,
    branch_position: {
      kind: 'int32',
      nullable: true,
      since: 2,
      doc: "Tree rollouts only: the first completion position this node sampled itself; [0, branch_position) are its parent's tokens, copied. 0 for a root; null for flat rollouts.",
    },
    policy_version: {
      kind: 'int32',
      doc: 'Version of the policy weights that generated the sample (the step whose weights were loaded; 0 = initial weights). Lets the learner tell on-policy from stale samples.',
    },
    prompt_text: { kind: 'utf8', doc: 'The prompt as text, after any chat template.' },
    prompt_token_ids: { kind: 'list<int32>', doc: 'Token ids of the prompt as fed to the model.' },
    completion_text: { kind: 'utf8', doc: 'The generated text (decoded completion_token_ids).' },
    completion_token_ids: { kind: 'list<int32>', doc: 'Generated token ids, including the stop token when finish_reason is "stop".' },
    behaviour_logprobs: {
      kind: 'list<float32>',
      finite: true,
      doc: "Log-probability of each completion token under the behaviour policy that sampled it, at the sampling temperature T: log softmax(logits / T)[token] over the model's whole vocabulary (T = 1 for greedy decoding). Top-k, top-p and min-p truncation are not part of it (as in TRL and verl), so it is the quantity the learner recomputes at the same T. Same length as completion_token_ids; the denominator of PPO/GRPO importance ratios.",
    },
    finish_reason: {
      kind: 'utf8',
      values: ['stop', 'length', 'branch', ...EPISODE_FINISH_REASONS],
      doc: '"stop": an end-of-sequence token or stop string ended generation (an episode: the policy gave its final answer); "length": the token limit did (an episode: its total-token limit); "branch": reserved for trees stored as segments (a node whose generation continues in its children); the tree rollouts written here are complete nodes and never use it. Episodes only: "max_turns" (the environment\'s turn limit), "max_seconds" (its wall-time limit), "tool_failure" (a tool call\'s infrastructure failed on every attempt: the episode is incomplete through no fault of the policy, and the advantage stage leaves it out instead of scoring it).',
    },
    loss_mask: {
      kind: 'list<bool>',
      nullable: true,
      since: 3,
      doc: "Episodes only: one per completion token, true on the tokens the policy sampled (trained on: the loss, the KL and the importance ratio see only these), false on observation and glue tokens (never trained on). Null for single completions: every completion token is the policy's.",
    },
    segment_ends: {
      kind: 'list<int32>',
      nullable: true,
      since: 3,
      doc: 'Episodes only: the completion position where each segment ends (exclusive), increasing, the last equal to the number of completion tokens; segment k covers [segment_ends[k-1], segment_ends[k]) (the first starts at 0).',
    },
    segment_roles: {
      kind: 'list<utf8>',
      nullable: true,
      since: 3,
      doc: 'Episodes only: the role of each segment: "policy" (a turn the policy sampled, as sampled), "observation" (tool results with the chat template\'s glue around them, appended by the environment), "glue" (template tokens alone, e.g. an end-of-turn token the policy\'s stop string left out).',
    },
    segment_turns: {
      kind: 'list<int32>',
      nullable: true,
      since: 3,
      doc: 'Episodes only: the turn (0-based) each segment belongs to; an observation belongs to the turn whose calls it answers.',
    },
    turns: { kind: 'int32', nullable: true, since: 3, doc: 'Episodes only: the policy turns the episode took.' },
    tool_calls: {
      kind: 'list<utf8>',
      nullable: true,
      since: 3,
      doc: 'Episodes only: every tool call the policy made, in order, each a JSON object {"turn", "name", "arguments", "output" (the text the tool returned, or null), "error" (why the call failed, or null), "attempts" (runs of the tool, retries of infrastructure failures included)}.',
    },
    observations: {
      kind: 'list<utf8>',
      nullable: true,
      since: 3,
      doc: "Episodes only: what each observation segment says, without the template's glue: the contents of its tool messages (the tools' outputs, joined by a newline when a turn made several calls; a malformed turn's is the error saying what was wrong), one per \"observation\" segment, in order.",
    },
    malformed_turns: {
      kind: 'int32',
      nullable: true,
      since: 3,
      doc: 'Episodes only: turns whose tool calls could not be parsed (each got an observation saying what was wrong).',
    },
  },
  rules: [
    'behaviour_logprobs has exactly one value per completion token.',
    'parent_node_id is set only together with node_id.',
    'branch_position is set only together with node_id: 0 for a root (parent_node_id null), at least 1 for a child, and below the number of completion tokens.',
    'finish_reason "branch" only on tree nodes (node_id set).',
    'The episode columns (loss_mask, segment_ends, segment_roles, segment_turns, turns, tool_calls, observations, malformed_turns) are all set or all null; episode finish reasons only with them.',
    'loss_mask has one value per completion token, true exactly on the "policy" segments; segment_ends increase and end at the number of completion tokens; segment_roles and segment_turns have one value per segment; one observation per "observation" segment.',
    'behaviour_logprobs is 0 on every token outside the loss mask.',
  ],
  check: (r) => {
    if (r.behaviour_logprobs.length !== r.completion_token_ids.length) {
      return `behaviour_logprobs has ${r.behaviour_logprobs.length} values but completion_token_ids has ${r.completion_token_ids.length}; give one logprob per completion token`;
    }
    if (r.parent_node_id != null && r.node_id == null) return 'parent_node_id is set but node_id is null; tree rows need both';
    if (r.finish_reason === 'branch' && r.node_id == null) return 'finish_reason "branch" is only for tree nodes (set node_id)';
    const bp = r.branch_position;
    if (bp != null) {
      if (r.node_id == null) return 'branch_position is set but node_id is null; only tree rows have a branch position';
      if (r.parent_node_id == null && bp !== 0) return `branch_position is ${bp} on a root node; a root is sampled from the prompt (0)`;
      if (r.parent_node_id != null && (bp < 1 || bp >= r.completion_token_ids.length)) {
        return `branch_position is ${bp} with ${r.completion_token_ids.length} completion tokens; a child copies [0, branch_position) from its parent and samples at least one token itself`;
      }
    }
    return episodeProblem(r);
  },
});

/** What breaks the episode rules of a rollouts row (see ROLLOUTS.rules), or undefined. */
function episodeProblem(r: {
  completion_token_ids: ArrayLike<number>;
  behaviour_logprobs: ArrayLike<number>;
  finish_reason: string;
  loss_mask: readonly boolean[] | null;
  segment_ends: ArrayLike<number> | null;
  segment_roles: readonly string[] | null;
  segment_turns: ArrayLike<number> | null;
  turns: number | null;
  tool_calls: readonly string[] | null;
  observations: readonly string[] | null;
  malformed_turns: number | null;
}): string | undefined {
  const cols = [r.loss_mask, r.segment_ends, r.segment_roles, r.segment_turns, r.turns, r.tool_calls, r.observations, r.malformed_turns];
  const set = cols.filter((c) => c !== null).length;
  if (set === 0) {
    return (EPISODE_FINISH_REASONS as readonly string[]).includes(r.finish_reason)
      ? `finish_reason "${r.finish_reason}" is an episode's; set the episode columns`
      : undefined;
  }
  if (set !== cols.length) return 'the episode columns are set only in part; an episode row sets all of them, a single completion none';
  const n = r.completion_token_ids.length;
  const mask = r.loss_mask!;
  const ends = r.segment_ends!;
  const roles = r.segment_roles!;
  if (mask.length !== n) return `loss_mask has ${mask.length} values for ${n} completion tokens`;
  if (roles.length !== ends.length || r.segment_turns!.length !== ends.length)
    return `${ends.length} segment_ends but ${roles.length} segment_roles and ${r.segment_turns!.length} segment_turns; give one of each per segment`;
  if (n > 0 && ends[ends.length - 1] !== n)
    return `the last segment ends at ${ends[ends.length - 1] ?? 0}, not at the ${n} completion tokens`;
  let start = 0;
  for (let k = 0; k < ends.length; k++) {
    const end = ends[k]!;
    if (end <= start) return `segment ${k} ends at ${end}, not after its start ${start}`;
    const role = roles[k]!;
    if (!(SEGMENT_ROLES as readonly string[]).includes(role))
      return `segment ${k} has role "${role}"; roles are ${SEGMENT_ROLES.join(', ')}`;
    for (let j = start; j < end; j++) {
      if (mask[j] !== (role === 'policy'))
        return `loss_mask[${j}] is ${mask[j]} inside a "${role}" segment; it is true exactly on policy segments`;
      if (role !== 'policy' && r.behaviour_logprobs[j] !== 0)
        return `behaviour_logprobs[${j}] is ${r.behaviour_logprobs[j]} on a "${role}" token; tokens the policy did not sample have 0`;
    }
    start = end;
  }
  const obs = roles.filter((x) => x === 'observation').length;
  if (r.observations!.length !== obs) return `${r.observations!.length} observations for ${obs} observation segments`;
  return undefined;
}

/** Rewards: one row per rollout row that was scored. */
export const REWARDS = defineTable({
  name: 'rewards',
  version: 1,
  doc: 'The reward of one sample (or tree node). Also the output of the offline reward-annotation workflow, with run_id = job id and step = 0.',
  columns: {
    run_id: runId,
    step,
    prompt_id: promptId,
    sample_id: { ...sampleId, doc: 'sample_id of the scored rollout row (0 for annotation inputs without one).' },
    node_id: nodeId,
    reward: {
      kind: 'float64',
      nullable: true,
      finite: true,
      doc: 'Total reward (the configured composition of the components). Null only when it could not be computed; then error says why. Never NaN: a NaN or throwing reward is recorded as null + error.',
    },
    components: {
      kind: 'map<utf8,float64>',
      finite: true,
      doc: 'Named reward components that made up the total (e.g. {"accuracy": 1, "format": 0.5}); empty when there is a single unnamed reward.',
    },
    token_rewards: {
      kind: 'list<float32>',
      nullable: true,
      finite: true,
      doc: 'Per-token (process) rewards, one per completion token, where a process reward model or dense reward supplies them; null otherwise.',
    },
    error: {
      kind: 'utf8',
      nullable: true,
      doc: 'Why the reward failed (exception message, "NaN", "timeout after 30 s", ...); null when it succeeded. A row may carry both a reward and an error when the failure policy substituted a penalty.',
    },
  },
  rules: ['reward null ⇒ error set (a missing reward is always explained).'],
  check: (r) =>
    r.reward === null && (r.error === null || r.error === '')
      ? 'reward is null but error is empty; record why the reward is missing'
      : undefined,
});

/** Advantages: what the learner multiplies each token's policy-gradient term by. */
export const ADVANTAGES = defineTable({
  name: 'advantages',
  version: 1,
  doc: 'The advantage of one sample (or tree node), as the learner consumes it.',
  columns: {
    run_id: runId,
    step,
    prompt_id: promptId,
    sample_id: sampleId,
    node_id: nodeId,
    advantage: {
      kind: 'float64',
      nullable: true,
      finite: true,
      doc: "Scalar advantage applied to every unmasked completion token (e.g. GRPO's group-normalised reward). Null when token_advantages is given.",
    },
    token_advantages: {
      kind: 'list<float32>',
      nullable: true,
      finite: true,
      doc: 'Per-token advantages, one per completion token (process rewards, tree/sibling-relative estimators); takes precedence over advantage.',
    },
    loss_mask: {
      kind: 'list<bool>',
      nullable: true,
      doc: 'Which completion tokens enter the loss (true = trained on), one per completion token; null = all of them.',
    },
  },
  rules: [
    'At least one of advantage and token_advantages is set.',
    'token_advantages and loss_mask, when both set, have the same length (one per completion token).',
  ],
  check: (r) => {
    if (r.advantage === null && r.token_advantages === null) return 'neither advantage nor token_advantages is set';
    if (r.token_advantages !== null && r.loss_mask !== null && r.token_advantages.length !== r.loss_mask.length) {
      return `token_advantages has ${r.token_advantages.length} values but loss_mask has ${r.loss_mask.length}`;
    }
    return undefined;
  },
});

/** Reference logprobs of an RL step with the KL in the reward: what its advantage stage charges as KL. */
export const REFERENCE_LOGPROBS = defineTable({
  name: 'reference_logprobs',
  version: 1,
  doc: "The reference policy's log-probabilities of one rollout row's completion tokens, written by the reference-scoring activity (scoreReferenceLogprobs) of an rl step whose loss has kl.inReward (REINFORCE++), before its advantages: one row per rollout row of the step, every shard and refill round. The advantage stage charges each token β·kl(behaviour_logprobs − ref_logprobs) in its reward; the learner feeds the same values to the loss's kl metric instead of scoring the reference again.",
  columns: {
    run_id: runId,
    step,
    prompt_id: promptId,
    sample_id: sampleId,
    node_id: nodeId,
    reference_version: {
      kind: 'int32',
      doc: 'The checkpoint scored: the reference policy of the phase (the checkpoint where the rl phase started).',
    },
    temperature: {
      kind: 'float64',
      finite: true,
      doc: "The temperature T the logprobs are taken at: the phase's sampling temperature (1 for greedy decoding), as behaviour_logprobs are.",
    },
    ref_logprobs: {
      kind: 'list<float32>',
      finite: true,
      doc: "log softmax(logits / T)[token] of each completion token under the reference checkpoint, over the whole vocabulary, given the prompt and the completion's earlier tokens: one per completion token of the rollout row (same length as its completion_token_ids and behaviour_logprobs; empty for an empty completion).",
    },
  },
  rules: ['temperature > 0.'],
  check: (r) => (r.temperature > 0 ? undefined : `temperature is ${r.temperature}; logprobs are taken at a positive temperature`),
});

/** Preference pairs of an online DPO step: which two samples of a prompt its DPO update compares. */
export const PREFERENCE_PAIRS = defineTable({
  name: 'preference_pairs',
  version: 1,
  doc: "One (chosen, rejected) pair of an online_dpo step: of one prompt group's scored samples, the one with the highest reward (chosen) and the one with the lowest (rejected), the first in sample order on a tie for either place. Groups whose rewards all tie, or with fewer than two scored non-empty completions, have no row. The samples are rows of the step's rollouts.",
  columns: {
    run_id: runId,
    step,
    prompt_id: promptId,
    group_id: { kind: 'utf8', doc: 'The group (rollouts.group_id) the two samples come from.' },
    chosen_sample_id: { kind: 'int32', doc: 'sample_id of the preferred sample (highest reward).' },
    rejected_sample_id: { kind: 'int32', doc: 'sample_id of the dispreferred sample (lowest reward).' },
    chosen_reward: { kind: 'float64', finite: true, doc: 'Total reward of the chosen sample.' },
    rejected_reward: { kind: 'float64', finite: true, doc: 'Total reward of the rejected sample.' },
  },
  rules: ['chosen_reward > rejected_reward (ties give no pair).'],
  check: (r) =>
    r.chosen_reward > r.rejected_reward ? undefined : `chosen_reward ${r.chosen_reward} is not above rejected_reward ${r.rejected_reward}`,
});

const opt = (doc: string) => ({ kind: 'float64', nullable: true, doc }) as const;

/** Step metrics: one row per committed step. */
export const METRICS = defineTable({
  name: 'metrics',
  version: 1,
  doc: 'One row per training step: what the step did and how long it took. Null = not measured in this step (e.g. kl when there is no reference policy). Stage times are wall-clock and so differ between re-executions of a step.',
  columns: {
    run_id: runId,
    step: { kind: 'int32', doc: 'The training step (0-based).' },
    phase: {
      kind: 'utf8',
      values: ['sft', 'rl', 'online_dpo', 'dpo', 'reward_model'],
      doc: '"sft": supervised warm-up step; "rl": reinforcement-learning step; "online_dpo": DPO on pairs sampled from the policy and ranked by the reward; "dpo": DPO on a preference dataset; "reward_model": Bradley-Terry training of a reward model (sequence classifier) on a preference dataset.',
    },
    policy_version: { kind: 'int32', doc: 'Policy version the step trained from (see rollouts.policy_version).' },
    num_prompts: { kind: 'int32', doc: "Prompts in the step's batch." },
    num_samples: { kind: 'int32', doc: 'Samples (rollout rows) that entered the loss.' },
    reward_mean: opt('Mean total reward over scored samples.'),
    reward_std: opt('Standard deviation of the total reward (population).'),
    reward_min: opt('Smallest total reward.'),
    reward_max: opt('Largest total reward.'),
    loss: opt('Mean training loss of the step.'),
    kl: opt('Mean per-token KL divergence to the reference policy (the k3 estimator, Schulman 2020, as in GRPO).'),
    entropy: opt('Mean per-token entropy of the policy on the completions.'),
    clip_fraction: opt('Fraction of tokens whose importance ratio was clipped (PPO, Schulman et al. 2017).'),
    grad_norm: opt('Global gradient norm before clipping.'),
    learning_rate: opt('Learning rate used in the step.'),
    prompt_length_mean: opt('Mean prompt length in tokens.'),
    completion_length_mean: opt('Mean completion length in tokens.'),
    completion_length_max: { kind: 'int32', nullable: true, doc: 'Longest completion in tokens.' },
    tokens_per_second: opt('Generated tokens per second of rollout wall time.'),
    rollout_seconds: opt('Wall time of the rollout stage.'),
    reward_seconds: opt('Wall time of reward annotation.'),
    advantage_seconds: opt('Wall time of advantage computation.'),
    learner_seconds: opt('Wall time of the learner (trainStep) stage.'),
    step_seconds: opt('Wall time of the whole step, start of rollout to commit.'),
    reward_errors: { kind: 'int32', doc: 'Rewards that failed (rewards rows with error set).' },
    dropped_samples: {
      kind: 'int32',
      doc: 'Samples left out of the loss (by the reward-failure policy, filters, or zero-variance groups).',
    },
    truncated_samples: { kind: 'int32', doc: 'Samples whose finish_reason is "length".' },
    extra: {
      kind: 'map<utf8,float64>',
      doc: 'Further named metrics (stage- or algorithm-specific) without a schema change; empty when none.',
    },
  },
});

/** Input of the offline reward-annotation workflow: what to score. */
export const ANNOTATION_INPUTS = defineTable({
  name: 'annotation_inputs',
  version: 1,
  doc: 'One (prompt, completion) pair to be scored by the offline reward-annotation workflow, whose output uses the rewards schema.',
  columns: {
    prompt_id: { kind: 'utf8', doc: 'Id of the prompt; copied to rewards.prompt_id.' },
    sample_id: {
      kind: 'int32',
      nullable: true,
      doc: "Id of the completion among the prompt's completions, if there are several; copied to rewards.sample_id (null → 0).",
    },
    prompt: { kind: 'utf8', doc: 'The prompt text.' },
    completion: { kind: 'utf8', doc: 'The completion text to score.' },
    reference: {
      kind: 'utf8',
      nullable: true,
      doc: 'Reference answer or other ground truth for verifiable rewards; null when the reward needs none.',
    },
  },
});

/** Every contract, in the order the docs list them. */
export const CONTRACTS = [ROLLOUTS, REWARDS, ADVANTAGES, REFERENCE_LOGPROBS, PREFERENCE_PAIRS, METRICS, ANNOTATION_INPUTS] as const;

/** A decoded row of each table (number lists as typed arrays, absent values as null). */
export type RolloutsRow = RowOf<typeof ROLLOUTS>;
export type RewardsRow = RowOf<typeof REWARDS>;
export type AdvantagesRow = RowOf<typeof ADVANTAGES>;
export type ReferenceLogprobsRow = RowOf<typeof REFERENCE_LOGPROBS>;
export type PreferencePairsRow = RowOf<typeof PREFERENCE_PAIRS>;
export type MetricsRow = RowOf<typeof METRICS>;
export type AnnotationInputRow = RowOf<typeof ANNOTATION_INPUTS>;
/** A row as the encoders accept it (nullable columns may be omitted, lists may be plain arrays). */
export type RolloutsInput = RowInput<typeof ROLLOUTS>;
export type RewardsInput = RowInput<typeof REWARDS>;
export type AdvantagesInput = RowInput<typeof ADVANTAGES>;
export type ReferenceLogprobsInput = RowInput<typeof REFERENCE_LOGPROBS>;
export type PreferencePairsInput = RowInput<typeof PREFERENCE_PAIRS>;
export type MetricsInput = RowInput<typeof METRICS>;
export type AnnotationInput = RowInput<typeof ANNOTATION_INPUTS>;

export const encodeRollouts = (rows: readonly RolloutsInput[]): Uint8Array => writeTable(ROLLOUTS, rows);
export const decodeRollouts = (bytes: Uint8Array, source?: string): RolloutsRow[] => readTable(ROLLOUTS, bytes, source);
export const encodeRewards = (rows: readonly RewardsInput[]): Uint8Array => writeTable(REWARDS, rows);
export const decodeRewards = (bytes: Uint8Array, source?: string): RewardsRow[] => readTable(REWARDS, bytes, source);
export const encodeAdvantages = (rows: readonly AdvantagesInput[]): Uint8Array => writeTable(ADVANTAGES, rows);
export const decodeAdvantages = (bytes: Uint8Array, source?: string): AdvantagesRow[] => readTable(ADVANTAGES, bytes, source);
export const encodeReferenceLogprobs = (rows: readonly ReferenceLogprobsInput[]): Uint8Array => writeTable(REFERENCE_LOGPROBS, rows);
export const decodeReferenceLogprobs = (bytes: Uint8Array, source?: string): ReferenceLogprobsRow[] =>
  readTable(REFERENCE_LOGPROBS, bytes, source);
export const encodePreferencePairs = (rows: readonly PreferencePairsInput[]): Uint8Array => writeTable(PREFERENCE_PAIRS, rows);
export const decodePreferencePairs = (bytes: Uint8Array, source?: string): PreferencePairsRow[] =>
  readTable(PREFERENCE_PAIRS, bytes, source);
export const encodeMetrics = (rows: readonly MetricsInput[]): Uint8Array => writeTable(METRICS, rows);
export const decodeMetrics = (bytes: Uint8Array, source?: string): MetricsRow[] => readTable(METRICS, bytes, source);
export const encodeAnnotationInputs = (rows: readonly AnnotationInput[]): Uint8Array => writeTable(ANNOTATION_INPUTS, rows);
export const decodeAnnotationInputs = (bytes: Uint8Array, source?: string): AnnotationInputRow[] =>
  readTable(ANNOTATION_INPUTS, bytes, source);
