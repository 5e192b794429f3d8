/**
 * A dataset as the run's prompt source: a `Task` (activities/tasks/types.ts) whose train stream is
 * the training rows in the seed's epoch order (order.ts) and whose eval split is the held-out rows
 * in file order. Every stage that reads prompts through `task.prompts(seed, split, n, offset)` —
 * rollout shards, the sft learner, the reward shards that rebuild items from prompt ids, the
 * evaluations, DAPO's refill rounds — works on a dataset unchanged.
 *
 * Prompt ids are `data-train-{i:06d}` (i: the train stream index, across epochs) and
 * `data-eval-{j:06d}` (j: the held-out row's place in the eval split). The task's own reward is
 * `exact_match` against the reference column; a run names its own with `reward.spec` or
 * `reward.functions`.
 */
import { exactMatch } from '../reward/verifiable.js';
import { instantiateReward } from '../reward/types.js';
import type { Split, Task, TaskItem } from '../tasks/types.js';
import { dataConfigSchema, type DataConfig, type DataExample, type LoadedDataset } from './dataset.js';
import { TrainOrder } from './order.js';

/** The task name of a dataset run: the prefix of its prompt ids. */
export const DATASET_TASK = 'data';

/** The task of a loaded dataset (see the file comment). */
export function datasetTask(data: LoadedDataset): Task<DataConfig> {
  const orders = new Map<number, TrainOrder>();
  const orderOf = (seed: number) => {
    let o = orders.get(seed);
    if (!o) orders.set(seed, (o = new TrainOrder(seed, data.train.length)));
    return o;
  };
  // The example behind each item handed out, for sftTarget (which gets the item alone).
  const examples = new WeakMap<TaskItem, DataExample>();
  const item = (split: Split, index: number, x: DataExample): TaskItem => {
    const it: TaskItem = {
      promptId: `${DATASET_TASK}-${split}-${String(index).padStart(6, '0')}`,
      prompt: x.prompt,
      reference: x.reference,
      metadata: { ...x.metadata },
      ...(x.messages ? { messages: x.messages.map((m) => ({ ...m })) } : {}),
    };
    examples.set(it, x);
    return it;
  };
  const reward = { name: exactMatch.name, options: {} };
  return {
    name: DATASET_TASK,
    optionsSchema: dataConfigSchema,
    options: data.config,
    prompts(seed, split, count, offset = 0) {
      if (!Number.isInteger(count) || count < 0 || !Number.isSafeInteger(offset) || offset < 0) {
        throw new RangeError(`count and offset are non-negative integers, got count ${count}, offset ${offset}`);
      }
      if (split === 'train') {
        const order = orderOf(seed);
        return Array.from({ length: count }, (_, k) => item('train', offset + k, data.train[order.at(offset + k).row]!));
      }
      if (split !== 'eval') throw new RangeError(`split must be "train" or "eval", got ${JSON.stringify(split)}`);
      if (offset + count > data.eval.length) {
        throw new RangeError(`the eval split has ${data.eval.length} rows; items ${offset}..${offset + count - 1} were asked for`);
      }
      return data.eval.slice(offset, offset + count).map((x, k) => item('eval', offset + k, x));
    },
    sftTarget(it) {
      const x = examples.get(it);
      if (!x) throw new Error(`${it.promptId}: sftTarget takes an item this task's prompts() made`);
      if (x.completion === null) throw new Error(`dataset row ${x.row} has no completion to train on (data.completionColumn)`);
      return x.completion;
    },
    reward,
    rewardDefinition: exactMatch as never,
    createReward: () => instantiateReward(exactMatch, {}),
    alphabet: data.alphabet,
    evalItems: data.eval.length,
    maxPromptChars: data.maxPromptChars,
    maxCompletionChars: data.maxCompletionChars,
  };
}
