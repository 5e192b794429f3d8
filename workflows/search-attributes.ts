/**
 * The custom search attributes durable-rl registers on its Temporal namespace (infra registers
 * them on the dev server; production clusters register them once with `temporal operator
 * search-attribute create`, see infra/README.md). Pure declarations: safe for workflow code.
 */
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

export const RUN_NAME = defineSearchAttributeKey('DurableRlRunName', SearchAttributeType.KEYWORD);
export const PHASE = defineSearchAttributeKey('DurableRlPhase', SearchAttributeType.KEYWORD);
export const STEP = defineSearchAttributeKey('DurableRlStep', SearchAttributeType.INT);
export const MEAN_REWARD = defineSearchAttributeKey('DurableRlMeanReward', SearchAttributeType.DOUBLE);
export const STATUS = defineSearchAttributeKey('DurableRlStatus', SearchAttributeType.KEYWORD);

/** Name and CLI type name of every attribute, for `temporal operator search-attribute create`. */
export const SEARCH_ATTRIBUTES: readonly { name: string; type: 'Keyword' | 'Int' | 'Double' }[] = [
  { name: RUN_NAME.name, type: 'Keyword' },
  { name: PHASE.name, type: 'Keyword' },
  { name: STEP.name, type: 'Int' },
  { name: MEAN_REWARD.name, type: 'Double' },
  { name: STATUS.name, type: 'Keyword' },
];
