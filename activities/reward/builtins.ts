/**
 * The built-in reward kinds of this folder, in the order of README.md's table. `registry.ts`'s
 * `defaultRegistry()` registers them; this file only lists them (no side effects on import).
 */
import type { RewardDefinition } from './types.js';
import { exactMatch, mathEquivalence, multipleChoice } from './verifiable.js';
import { formatTags, jsonValid } from './format.js';
import { toolCall } from './toolcall.js';
import { overlongPenalty, lengthPenalty } from './length.js';
import { bleuReward, chrfReward, rougeLReward } from './reference.js';
import { codeExecution } from './code.js';
import { llmJudge } from './judge.js';
import { efficiency } from './efficiency.js';
import { turnRewards } from './turns.js';
import { rewardModel } from './reward-model.js';
import { taskRewardDefinitions } from '../tasks/tasks.js';

export function builtinRewards(): RewardDefinition[] {
  const defs = [
    exactMatch,
    mathEquivalence,
    multipleChoice,
    formatTags,
    jsonValid,
    toolCall,
    overlongPenalty,
    lengthPenalty,
    bleuReward,
    chrfReward,
    rougeLReward,
    codeExecution,
    llmJudge,
    efficiency,
    turnRewards,
    rewardModel,
  ];
  // The built-in synthetic tasks' own rewards (`addition`, `countdown`), see activities/tasks/.
  return [...(defs as unknown as RewardDefinition[]), ...taskRewardDefinitions()];
}
