/**
 * The trajectory reward of the built-in environments: the outcome of the episode's final answer,
 * plus the cost of its tool calls, built from the reward library rather than restated:
 *
 *   R = correct · correctReward                                     outcome (exact_match on the final <a>/<answer>)
 *     + efficiencyWeight · efficiencyReward(calls, reference, shape) · [correct, when gated]
 *                                                                    HyperEyes TRACE / Router-R1 cost (efficiency.ts)
 *     + toolCallWeight · R_correct(calls, gold calls)                 ToolRL call correctness in [0, 1] (toolcall.ts)
 *     − malformedPenalty · malformed turns
 *
 * The reference of the efficiency term is the item's gold call count (`metadata.goldCalls`: a call
 * the gold trajectory does not need is a needless call) or a fixed number. Gated by default, so an
 * episode never earns the efficiency term for skipping the tool and answering wrong.
 *
 * The answer is read from the last policy turn (`sample.turns`, issue 15), or from the completion
 * of a sample without turns; calls from `sample.toolCalls`.
 */
import { z } from '../common/config.js';
import { efficiencyReward, trajectoryCost } from '../reward/efficiency.js';
import { toolCall } from '../reward/toolcall.js';
import { defineReward, instantiateReward, type RewardResult, type RewardSample } from '../reward/types.js';
import { exactMatch } from '../reward/verifiable.js';

export const EpisodeRewardOptions = z.strictObject({
  /** The tag of the final answer (`a` in the tagged format, `answer` in hermes). */
  answerTag: z.string().min(1).default('a'),
  /** Reward of a correct final answer (exact_match of the answer tag's content against the reference, case-insensitive). */
  correctReward: z.number().default(1),
  /** Weight of the efficiency term (0 turns it off). */
  efficiencyWeight: z.number().nonnegative().default(0.2),
  /** The efficiency term's reference call count: `gold` (the item's `metadata.goldCalls`) or a number of calls. */
  efficiencyReference: z.union([z.literal('gold'), z.number().nonnegative()]).default('gold'),
  /** Above the reference: `ratio` (reference / calls) or `linear` (2 − calls / reference, floored at 0); efficiency.ts. */
  efficiencyShape: z.enum(['ratio', 'linear']).default('ratio'),
  /** Pay the efficiency term only for a correct answer (so skipping the tool and answering wrong earns nothing). */
  gateEfficiency: z.boolean().default(true),
  /** Weight of ToolRL's call correctness against the gold calls (`metadata.toolCalls`), scaled to [0, 1] (0: not computed). */
  toolCallWeight: z.number().nonnegative().default(0),
  /** Subtracted per malformed turn (a call that could not run). */
  malformedPenalty: z.number().nonnegative().default(0),
});
export type EpisodeRewardOptions = z.output<typeof EpisodeRewardOptions>;

/** The text of the last policy turn of a sample (the whole completion when it has no turns). */
export function finalTurnText(sample: RewardSample): string {
  const turns = sample.turns ?? [];
  for (let i = turns.length - 1; i >= 0; i--) if (turns[i]!.role === 'assistant') return turns[i]!.text;
  return sample.completion;
}

/** The number of malformed policy turns of a sample. */
export function malformedTurns(sample: RewardSample): number {
  return (sample.turns ?? []).filter((t) => t.role === 'assistant' && t.malformed !== undefined).length;
}

function referenceCalls(sample: RewardSample, o: EpisodeRewardOptions): number {
  if (o.efficiencyReference !== 'gold') return o.efficiencyReference;
  const g = sample.metadata?.goldCalls;
  if (typeof g !== 'number' || !Number.isInteger(g) || g < 0)
    throw new Error(
      `sample ${sample.promptId}/${sample.sampleId} has no metadata.goldCalls (the gold trajectory's call count): give efficiencyReference a number, or rows from the environment`,
    );
  return g;
}

export const episodeReward = defineReward({
  name: 'episode',
  description: "a tool-using episode's outcome (final answer) plus the efficiency of its calls and, optionally, ToolRL call correctness",
  source: 'outcome reward (RLVR); HyperEyes TRACE / Router-R1 cost efficiency; ToolRL (Qian et al. 2025)',
  optionsSchema: EpisodeRewardOptions,
  create: (o) => {
    const outcome = instantiateReward(exactMatch, { answerTag: o.answerTag, extract: ['answer_tag'] });
    const calls =
      o.toolCallWeight > 0
        ? instantiateReward(toolCall, { callsFrom: 'sample', requireThink: false, formatReward: 0, correctMin: 0, correctMax: 1 })
        : null;
    return {
      async score(sample, ctx): Promise<RewardResult> {
        const judged = await outcome.score!({ ...sample, completion: finalTurnText(sample) }, ctx);
        const correct = judged.components!.correct!;
        const n = trajectoryCost(sample, 'tool_calls');
        const efficiency = efficiencyReward(n, referenceCalls(sample, o), o.efficiencyShape);
        const malformed = malformedTurns(sample);
        let reward = correct * o.correctReward + o.efficiencyWeight * efficiency * (o.gateEfficiency ? correct : 1);
        reward -= o.malformedPenalty * malformed;
        const components: Record<string, number> = {
          correct,
          answered: judged.components!.answered!,
          calls: n,
          efficiency,
          malformed,
        };
        if (calls) {
          const c = (await calls.score!({ ...sample, toolCalls: sample.toolCalls ?? [] }, ctx)).components!.tool_correct!;
          components.tool_correct = c;
          reward += o.toolCallWeight * c;
        }
        return { reward, components };
      },
    };
  },
});
