/**
 * Turn-level rewards of a multi-turn episode (issue 15): each policy turn of `sample.turns` gets an
 * immediate reward from what happened to it, and the reward returns
 *
 *   - components: `turn_mean` (or `turn_sum`, by `aggregate`), the reward of the episode's turns
 *     together, and counts (`turns`, `valid_calls`, `tool_errors`, `malformed`, `repeated_calls`,
 *     `answered`); the reward itself is the aggregate;
 *   - processRewards: one per completion token, each policy turn's reward on its last token (0
 *     elsewhere, observations included), when the turns carry token counts.
 *
 * A turn's reward (options, defaults):
 *   a call turn whose every call ran and answered   validCall (0.5)
 *   a call turn with an observation that is an error toolError (−0.25)  (`error:` by the environments' convention)
 *   a malformed turn (a call that could not run)    malformed (−1)
 *   a call that repeats an earlier call exactly     repeatedCall (−0.5) each, added to its turn
 *   the final turn, holding an answer tag           answered (0.5); without one: unanswered (−0.5)
 *
 * They are the immediate rewards of two compositions (compose.ts, COMPOSE.md):
 *   - G-RA (gated reward accumulation; "Stabilizing Long-term Multi-turn RL with Gated Rewards",
 *     2025): `compose: { name: gated, outcome: correct, threshold: 1, dense: { turns: 0.2 } }` adds
 *     the turn rewards only to episodes whose outcome passed, so they cannot be farmed by episodes
 *     that fail; `processWeight` does the same with the per-turn process rewards.
 *   - Atom-Searcher's per-step process rewards under a decaying weight ("Fine-Grained Atomic
 *     Thought Reward", 2025): `compose: { name: process_outcome_schedule, outcome: correct,
 *     totalSteps: N }` mixes the outcome with Σ of these per-turn process rewards, the process
 *     weight decaying from `start` to `end` over training.
 */
import { z } from '../common/config.js';
import { extractTag } from './extract.js';
import { jsonEqual } from './format.js';
import { defineReward, type RewardResult, type RewardSample, type RewardTurn } from './types.js';

export const TurnRewardOptions = z.strictObject({
  /** A call turn whose every call answered without an error. */
  validCall: z.number().default(0.5),
  /** A call turn with at least one observation that is an error (the tool ran, the call was wrong). */
  toolError: z.number().default(-0.25),
  /** A malformed turn: bad JSON, an unknown tool, arguments against the schema. */
  malformed: z.number().default(-1),
  /** Each call that repeats an earlier call of the episode (same name and arguments): needless. */
  repeatedCall: z.number().default(-0.5),
  /** The final turn holds the answer tag. */
  answered: z.number().default(0.5),
  /** The final turn has no answer tag. */
  unanswered: z.number().default(-0.5),
  /** The answer tag (`a` for the tagged format, `answer` for hermes). */
  answerTag: z.string().min(1).default('answer'),
  /** How an observation says a call failed: its text starts with this (the environments' `error:`). */
  errorPrefix: z.string().min(1).default('error:'),
  /** The reward of the episode: `mean` of its turn rewards (bounded by the options), or `sum` (G-RA's accumulation). */
  aggregate: z.enum(['mean', 'sum']).default('mean'),
});
export type TurnRewardOptions = z.output<typeof TurnRewardOptions>;

/** One policy turn's reward, with what happened to it. */
export interface TurnScore {
  /** Index of the turn in `sample.turns`. */
  index: number;
  reward: number;
  kind: 'valid_call' | 'tool_error' | 'malformed' | 'answered' | 'unanswered';
  repeated: number;
}

/** The reward of every policy turn of an episode (in order). */
export function scoreTurns(turns: readonly RewardTurn[], o: TurnRewardOptions): TurnScore[] {
  const seen: { name: string; arguments: Record<string, unknown> }[] = [];
  const out: TurnScore[] = [];
  const lastPolicy = turns.findLastIndex((t) => t.role === 'assistant');
  turns.forEach((t, i) => {
    if (t.role !== 'assistant') return;
    const calls = t.toolCalls ?? [];
    let kind: TurnScore['kind'];
    if (t.malformed !== undefined) kind = 'malformed';
    else if (calls.length > 0) {
      const answers: RewardTurn[] = [];
      for (let j = i + 1; j < turns.length && turns[j]!.role === 'tool'; j++) answers.push(turns[j]!);
      kind = answers.some((a) => a.text.trimStart().startsWith(o.errorPrefix)) ? 'tool_error' : 'valid_call';
    } else if (i === lastPolicy) kind = extractTag(t.text, o.answerTag) !== undefined ? 'answered' : 'unanswered';
    else kind = 'unanswered'; // a turn without calls that did not end the episode (cut by a limit)
    let repeated = 0;
    for (const c of calls) {
      if (seen.some((s) => s.name === c.name && jsonEqual(s.arguments, c.arguments))) repeated++;
      else seen.push({ name: c.name, arguments: c.arguments });
    }
    const base = {
      valid_call: o.validCall,
      tool_error: o.toolError,
      malformed: o.malformed,
      answered: o.answered,
      unanswered: o.unanswered,
    }[kind];
    out.push({ index: i, reward: base + repeated * o.repeatedCall, kind, repeated });
  });
  return out;
}

/**
 * Per-token process rewards: each policy turn's reward on its last token, 0 elsewhere; undefined
 * when a turn lacks its token count (the rollout did not record it).
 */
export function turnProcessRewards(turns: readonly RewardTurn[], scores: readonly TurnScore[]): number[] | undefined {
  if (turns.some((t) => t.tokens === undefined)) return undefined;
  const ends: number[] = [];
  let at = 0;
  for (const t of turns) ends.push((at += t.tokens!));
  const out = new Array<number>(at).fill(0);
  for (const s of scores) if (turns[s.index]!.tokens! > 0) out[ends[s.index]! - 1] = s.reward;
  return out;
}

function where(sample: RewardSample): string {
  return `sample ${sample.promptId}/${sample.sampleId}`;
}

export const turnRewards = defineReward({
  name: 'turn_rewards',
  description:
    "immediate rewards of an episode's turns (valid calls, tool errors, malformed and repeated calls, the final answer) and per-turn process rewards",
  source: 'G-RA (Stabilizing Long-term Multi-turn RL with Gated Rewards, 2025); Atom-Searcher (2025) per-step process rewards',
  optionsSchema: TurnRewardOptions,
  create: (o) => ({
    score(sample): RewardResult {
      const turns = sample.turns;
      if (!turns) throw new Error(`${where(sample)} has no turns: turn_rewards scores multi-turn episodes (a run with an environment)`);
      const scores = scoreTurns(turns, o);
      const sum = scores.reduce((s, t) => s + t.reward, 0);
      const reward = o.aggregate === 'sum' ? sum : scores.length > 0 ? sum / scores.length : 0;
      const count = (k: TurnScore['kind']) => scores.filter((s) => s.kind === k).length;
      const processRewards = turnProcessRewards(turns, scores);
      if (processRewards && sample.completionTokens !== undefined && processRewards.length !== sample.completionTokens)
        throw new Error(`${where(sample)}: its turns hold ${processRewards.length} tokens, its completion ${sample.completionTokens}`);
      return {
        reward,
        components: {
          [o.aggregate === 'sum' ? 'turn_sum' : 'turn_mean']: reward,
          turns: scores.length,
          valid_calls: count('valid_call'),
          tool_errors: count('tool_error'),
          malformed: count('malformed'),
          repeated_calls: scores.reduce((s, t) => s + t.repeated, 0),
          answered: count('answered'),
        },
        ...(processRewards ? { processRewards } : {}),
      };
    },
  }),
});
