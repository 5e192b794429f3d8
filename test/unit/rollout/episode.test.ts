/**
 * Multi-turn episodes (activities/rollout/episode.ts) with a scripted policy: each episode's turn t
 * "samples" the tokens of a script, one at a time through the job's stop hook as generate.ts does,
 * so the turn loop, the stop strings, the segments, the limits, the tool retries and the resume
 * from a recorded turn are checked without a model. The exact-token test uses the Qwen3 fixture's
 * BPE tokenizer and chat template.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ApplicationFailure } from '@temporalio/common';
import { readFileSync } from 'node:fs';
import { CharTokenizer, type TextTokenizer } from '../../../activities/model/tokenizer.js';
import { loadTokenizerDir } from '../../../activities/model/tokenizer-dir.js';
import type { Generation } from '../../../activities/model/generate.js';
import { defineEnvironment, ToolInfraError, type Environment, type Tool } from '../../../activities/env/types.js';
import { parseSamplingParams } from '../../../activities/rollout/sampling.js';
import type { SequenceJob } from '../../../activities/rollout/policy.js';
import {
  episodeColumns,
  runEpisodes,
  turnStream,
  type EpisodeOptions,
  type EpisodeStart,
  type EpisodesCheckpoint,
  type TurnKey,
} from '../../../activities/rollout/episode.js';
import { encodeRollouts, decodeRollouts } from '../../../activities/store/schemas.js';

const ALPHABET = '0123456789*+=<>/abcdefghijklmnopqrstuvwxyz:| ';
const tok = CharTokenizer.fromAlphabet(ALPHABET);

/** A tagged calculator: `<c>12*34</c>` → `<o>408</o>`. `fail(n)` makes its first n runs infrastructure failures. */
function calcEnv(opts: { maxTurns?: number; maxTotalTokens?: number; run?: Tool['run']; timeoutMs?: number } = {}): Environment {
  const calc: Tool = {
    spec: {
      name: 'calc',
      description: 'multiply',
      parameters: { type: 'object', properties: { expression: { type: 'string' } }, required: ['expression'] },
    },
    tag: 'c',
    ...(opts.timeoutMs ? { timeoutMs: opts.timeoutMs } : {}),
    run:
      opts.run ??
      ((args) => {
        const [a, b] = String(args.expression).split('*').map(Number);
        return String(a! * b!);
      }),
  };
  return defineEnvironment({
    name: 'calc-test',
    tools: [calc],
    limits: { maxTurns: opts.maxTurns ?? 4, maxTotalTokens: opts.maxTotalTokens ?? 200, maxSeconds: 3600 },
    format: 'tagged',
    reset: (row) => [{ role: 'user', content: row.prompt }],
  });
}

function start(promptId: string, sampleId: number, prompt: string, t: TextTokenizer = tok): EpisodeStart {
  return {
    promptId,
    sampleId,
    row: { promptId, prompt, reference: '', metadata: {} },
    messages: [{ role: 'user', content: prompt }],
    promptTokens: [1, ...t.encode(prompt, { addSpecialTokens: false })],
  };
}

/**
 * A scripted policy: turn t of episode `${promptId}/${sampleId}` produces script[key][t]'s tokens
 * (an EOS appended where the script says `$`), each through job.ends as generate.ts would; the
 * behaviour logprob of position p is -(p + 1) / 16. Records each call's job count.
 */
function scripted(scripts: Record<string, (string | number[])[]>, t: TextTokenizer = tok, eos = 2) {
  const calls: number[] = [];
  const sampled: number[][] = [];
  const turnOf = new Map<string, number>();
  const generate = async (jobs: readonly SequenceJob[], maxNewTokens: number, who: readonly TurnKey[]): Promise<Generation[]> => {
    calls.push(jobs.length);
    return jobs.map((job, k) => {
      const key = `${who[k]!.promptId}/${who[k]!.sampleId}`;
      const turn = turnOf.get(key) ?? 0;
      turnOf.set(key, turn + 1);
      const s = scripts[key]![turn]!;
      const ids =
        typeof s === 'string' ? [...t.encode(s.replace('$', ''), { addSpecialTokens: false }), ...(s.endsWith('$') ? [eos] : [])] : s;
      const out: Generation = { tokens: [], logprobs: [], finishReason: 'length' };
      for (let pos = 0; pos < maxNewTokens && pos < ids.length; pos++) {
        out.tokens.push(ids[pos]!);
        out.logprobs.push(-(pos + 1) / 16);
        if (ids[pos] === eos || job.ends?.(ids[pos]!, pos)) {
          out.finishReason = 'stop';
          break;
        }
      }
      sampled.push(out.tokens);
      return out;
    });
  };
  return { calls, sampled, generate, turnOf };
}

function options(env: Environment, gen: ReturnType<typeof scripted>, over: Partial<EpisodeOptions> = {}): EpisodeOptions {
  return {
    env,
    seed: 5,
    step: 2,
    params: parseSamplingParams({ max_tokens: 24 }),
    stopIds: [2],
    vocabSize: tok.vocabSize,
    encode: (text) => tok.encode(text, { addSpecialTokens: false }),
    decode: (ids) => tok.decode(ids),
    chat: null,
    generate: gen.generate,
    sleep: async () => undefined,
    ...over,
  };
}

const roles = (cols: ReturnType<typeof episodeColumns>) =>
  (cols.segment_roles as string[]).map((r, k) => `${r}:${(cols.segment_ends as number[])[k]}`);

describe('episodes: turns, segments, exact tokens', () => {
  it('a two-turn episode: call 12 tokens (stopped at </c>, the rest never generated), observation <o>408</o> 10 tokens with mask 0, answer 10 tokens + EOS → stop', async () => {
    const s = [start('p0', 0, '12*34=')];
    const gen = scripted({ 'p0/0': ['<c>12*34</c><o>999</o>junk', '<a>408</a>$'] });
    const [e] = await runEpisodes(s, options(calcEnv(), gen));
    const cols = episodeColumns(e!, (ids) => tok.decode(ids), new Set([2]));
    assert.deepEqual(roles(cols), ['policy:12', 'observation:22', 'policy:33']);
    assert.equal(cols.completion_text, '<c>12*34</c><o>408</o><a>408</a>');
    assert.equal(cols.finish_reason, 'stop');
    assert.equal(cols.turns, 2);
    assert.deepEqual(cols.observations, ['408']);
    assert.deepEqual(JSON.parse(cols.tool_calls![0]!), {
      turn: 0,
      name: 'calc',
      arguments: { expression: '12*34' },
      output: '408',
      error: null,
      attempts: 1,
    });
    const mask = cols.loss_mask as boolean[];
    assert.equal(mask.filter(Boolean).length, 23);
    assert.deepEqual(mask.slice(11, 23), [true, false, false, false, false, false, false, false, false, false, false, true]);
    // behaviour logprobs: the policy's as sampled (positions restart each turn), 0 on the observation
    const lp = cols.behaviour_logprobs as number[];
    assert.equal(lp[0], -1 / 16);
    assert.equal(lp[11], -12 / 16);
    assert.ok(lp.slice(12, 22).every((x) => x === 0));
    assert.equal(lp[22], -1 / 16);
    // and the row is a valid rollouts v3 row
    const [row] = decodeRollouts(
      encodeRollouts([
        {
          run_id: 'r',
          step: 2,
          prompt_id: 'p0',
          sample_id: 0,
          group_id: 'p0',
          policy_version: 2,
          prompt_text: '12*34=',
          prompt_token_ids: s[0]!.promptTokens,
          ...cols,
        },
      ]),
    );
    assert.deepEqual(row!.loss_mask, mask);
  });

  it('one generate call per turn over every live episode: 3 episodes, one answers at once → calls of 3 then 2 jobs', async () => {
    const s = [start('p0', 0, '2*3='), start('p0', 1, '2*3='), start('p1', 0, '4*5=')];
    const gen = scripted({
      'p0/0': ['<c>2*3</c>', '<a>6</a>$'],
      'p0/1': ['<a>5</a>$'],
      'p1/0': ['<c>4*5</c>', '<a>20</a>$'],
    });
    const out = await runEpisodes(s, options(calcEnv(), gen));
    assert.deepEqual(gen.calls, [3, 2]);
    assert.deepEqual(
      out.map((e) => [e.turns, e.finishReason]),
      [
        [2, 'stop'],
        [1, 'stop'],
        [2, 'stop'],
      ],
    );
  });

  it('limits: maxTurns 2 ends a caller with max_turns; maxTotalTokens 34 (prompt 5) cuts the second observation to its first token → length', async () => {
    const s = [start('p0', 0, '2*3=')];
    const again = scripted({ 'p0/0': ['<c>2*3</c>', '<c>2*3</c>', '<a>6</a>$'] });
    const [a] = await runEpisodes(s, options(calcEnv({ maxTurns: 2 }), again));
    assert.equal(a!.finishReason, 'max_turns');
    assert.equal(a!.turns, 2);
    assert.deepEqual(again.calls, [1, 1]);

    const long = scripted({ 'p0/0': ['<c>2*3</c>', '<c>2*3</c>', '<a>6</a>$'] });
    const [b] = await runEpisodes(s, options(calcEnv({ maxTotalTokens: 34 }), long));
    assert.equal(b!.finishReason, 'length');
    assert.equal(s[0]!.promptTokens.length + b!.tokens.length, 34);
    assert.deepEqual(b!.segmentRoles, ['policy', 'observation', 'policy', 'observation']);
    assert.deepEqual(b!.observations, ['6', '6']);
  });

  it('a malformed call (an unclosed tag) is answered by an observation saying what was wrong, counted, and the episode goes on', async () => {
    const s = [start('p0', 0, '2*3=')];
    const gen = scripted({ 'p0/0': ['<c>2*3$', '<a>6</a>$'] });
    const [e] = await runEpisodes(s, options(calcEnv(), gen));
    assert.equal(e!.malformedTurns, 1);
    assert.equal(e!.finishReason, 'stop');
    assert.deepEqual(e!.observations, ['error: <c> is not closed: end the call with </c>']);
    assert.equal(
      tok.decode(e!.tokens.slice(e!.segmentEnds[0], e!.segmentEnds[1])),
      '<o>error: <c> is not closed: end the call with </c></o>',
    );
    assert.deepEqual(e!.toolCalls, []);
  });
});

describe("episodes: an environment's own step", () => {
  /** calcEnv with a step of its own: `judge(turn, history)` answers each turn; every call the loop makes is recorded. */
  function steppedEnv(judge: NonNullable<Environment['step']>) {
    const seen: { kind: string; text: string; last: string }[] = [];
    const env = defineEnvironment({
      ...calcEnv(),
      step: async (turn, history, ctx) => {
        seen.push({ kind: turn.kind, text: turn.text, last: history[history.length - 1]!.content });
        return judge(turn, history, ctx);
      },
    });
    return { env, seen };
  }

  it('step sees every turn, a final answer too; done: false after a wrong answer appends its observation and the policy answers again', async () => {
    const { env, seen } = steppedEnv(async (turn, history) => {
      const answer = /<a>(.*?)<\/a>/.exec(turn.text)?.[1];
      if (turn.kind === 'final')
        return answer === '6' ? { observations: [], done: true } : { observations: [{ role: 'tool', content: 'no' }], done: false };
      return { observations: [{ role: 'tool', content: `seen ${history.length}` }], done: false };
    });
    const s = [start('p0', 0, '2*3=')];
    const [e] = await runEpisodes(s, options(env, scripted({ 'p0/0': ['<a>5</a>$', '<a>6</a>$'] })));
    assert.deepEqual(
      seen.map((x) => [x.kind, x.last]),
      [
        ['final', '<a>5</a>'],
        ['final', '<a>6</a>'],
      ],
    );
    assert.equal(e!.turns, 2);
    assert.equal(e!.finishReason, 'stop');
    assert.deepEqual(e!.segmentRoles, ['policy', 'observation', 'policy']);
    assert.deepEqual(e!.observations, ['no']);
    assert.equal(tok.decode(e!.tokens.slice(e!.segmentEnds[0], e!.segmentEnds[1])), '<o>no</o>');
  });

  it('done: true on a calls turn ends the episode there ("stop", no observation segment), its output recorded as the call\'s', async () => {
    const { env, seen } = steppedEnv(async (turn) =>
      turn.kind === 'calls'
        ? { observations: [{ role: 'tool', name: 'calc', content: 'submitted' }], done: true }
        : { observations: [], done: false },
    );
    const s = [start('p0', 0, '2*3='), start('p1', 0, '2*3=')];
    const gen = scripted({ 'p0/0': ['<c>2*3</c>', '<a>6</a>$'], 'p1/0': ['<a>6</a>$', '<c>2*3</c>'] });
    const out = await runEpisodes(s, options(env, gen));
    assert.equal(out[0]!.finishReason, 'stop');
    assert.equal(out[0]!.turns, 1, 'no turn after done');
    assert.deepEqual(out[0]!.segmentRoles, ['policy']);
    assert.deepEqual(out[0]!.observations, []);
    assert.equal(out[0]!.toolCalls[0]!.output, 'submitted');
    assert.deepEqual(out[0]!.messages.slice(-2), [
      { role: 'assistant', content: '<c>2*3</c>' },
      { role: 'tool', name: 'calc', content: 'submitted' },
    ]);
    // the other episode's final answer is not done for this environment: it goes on to its call
    assert.equal(out[1]!.turns, 2);
    assert.equal(out[1]!.finishReason, 'stop');
    assert.deepEqual(gen.calls, [2, 1]);
    assert.deepEqual(
      seen.map((x) => x.kind),
      ['calls', 'final', 'calls'],
    );
  });

  it('a step that never says done runs to maxTurns; one returning a bad shape is refused naming the environment', async () => {
    const { env } = steppedEnv(async () => ({ observations: [], done: false }));
    const [e] = await runEpisodes(
      [start('p0', 0, '2*3=')],
      options(env, scripted({ 'p0/0': ['<a>6</a>$', '<a>6</a>$', '<a>6</a>$', '<a>6</a>$'] })),
    );
    assert.equal(e!.finishReason, 'max_turns');
    assert.equal(e!.turns, 4);
    const bad = steppedEnv(async () => ({ observations: 'no' }) as never).env;
    await assert.rejects(runEpisodes([start('p0', 0, '2*3=')], options(bad, scripted({ 'p0/0': ['<a>6</a>$'] }))), (err: unknown) => {
      assert.match(
        (err as Error).message,
        /environment calc-test: step returned \{"observations":"no"\}, not \{ observations: ChatMessage\[\], done: boolean \}/,
      );
      assert.ok(err instanceof ApplicationFailure && err.nonRetryable, 'the same every attempt: not retried, the run waits for a fix');
      return true;
    });
  });
});

describe('episodes: tools fail, retried alone', () => {
  it('a tool that fails 3 times then succeeds costs retries of that call only: attempts 4, the episode ends "stop", 2 generate calls (no turn generated again)', async () => {
    let runs = 0;
    const env = calcEnv({
      run: () => {
        runs++;
        if (runs <= 3) throw new ToolInfraError(`sandbox down (${runs})`);
        return '6';
      },
    });
    const s = [start('p0', 0, '2*3='), start('p1', 0, '2*3=')];
    const gen = scripted({ 'p0/0': ['<c>2*3</c>', '<a>6</a>$'], 'p1/0': ['<a>6</a>$'] });
    const waits: number[] = [];
    const out = await runEpisodes(s, options(env, gen, { sleep: async (ms) => void waits.push(ms) }));
    assert.equal(runs, 4);
    assert.deepEqual(waits, [100, 200, 400]);
    assert.equal(out[0]!.toolCalls[0]!.attempts, 4);
    assert.equal(out[0]!.toolCalls[0]!.output, '6');
    assert.equal(out[0]!.finishReason, 'stop');
    assert.equal(out[1]!.finishReason, 'stop');
    assert.deepEqual(gen.calls, [2, 1]);
  });

  it('a tool that never answers times out (its own timeout, 30 ms) and is retried; one whose infrastructure fails on all 5 attempts ends the episode "tool_failure", the other episode unharmed', async () => {
    let runs = 0;
    const hang = calcEnv({
      timeoutMs: 30,
      run: (_args, ctx) =>
        new Promise<string>((resolve) => {
          runs++;
          if (runs === 2) resolve('6');
          ctx.signal.addEventListener('abort', () => undefined);
        }),
    });
    const s = [start('p0', 0, '2*3=')];
    const [e] = await runEpisodes(s, options(hang, scripted({ 'p0/0': ['<c>2*3</c>', '<a>6</a>$'] })));
    assert.equal(e!.toolCalls[0]!.attempts, 2);
    assert.equal(e!.finishReason, 'stop');

    const down = calcEnv({
      run: () => {
        throw new ToolInfraError('no sandbox');
      },
    });
    const two = [start('p0', 0, '2*3='), start('p1', 0, '2*3=')];
    const out = await runEpisodes(two, options(down, scripted({ 'p0/0': ['<c>2*3</c>', '<a>6</a>$'], 'p1/0': ['<a>6</a>$'] })));
    assert.equal(out[0]!.finishReason, 'tool_failure');
    assert.equal(out[0]!.toolCalls[0]!.error, 'no sandbox (5 attempts)');
    assert.equal(out[0]!.toolCalls[0]!.attempts, 5);
    assert.deepEqual(out[0]!.segmentRoles, ['policy'], 'no observation after a failed call');
    assert.equal(out[1]!.finishReason, 'stop');
  });

  it('a tool that throws an ordinary error (not infrastructure) is not retried: its message is the observation', async () => {
    let runs = 0;
    const env = calcEnv({
      run: () => {
        runs++;
        throw new RangeError('bad expression');
      },
    });
    const s = [start('p0', 0, '2*3=')];
    const [e] = await runEpisodes(s, options(env, scripted({ 'p0/0': ['<c>2*3</c>', '<a>6</a>$'] })));
    assert.equal(runs, 1);
    assert.deepEqual(e!.observations, ['error: bad expression']);
  });
});

describe("episodes: the episodes' tool calls run concurrently", () => {
  /** A calc tool that waits (longer for earlier episodes, so calls finish in reverse order) and counts the calls in flight. */
  function slowCalc() {
    let inFlight = 0;
    let maxInFlight = 0;
    const finished: string[] = [];
    const env = calcEnv({
      run: async (args, ctx) => {
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        await new Promise((r) => setTimeout(r, 5 * (8 - Number(ctx.promptId.slice(1)))));
        inFlight--;
        finished.push(ctx.promptId);
        const [a, b] = String(args.expression).split('*').map(Number);
        return String(a! * b!);
      },
    });
    return { env, finished, max: () => maxInFlight };
  }
  const N = 6;
  const starts = () => Array.from({ length: N }, (_, p) => start(`p${p}`, 0, `${p + 2}*3=`));
  const scripts = () =>
    Object.fromEntries(Array.from({ length: N }, (_, p) => [`p${p}/0`, [`<c>${p + 2}*3</c>`, `<a>${(p + 2) * 3}</a>$`]]));

  it("an episode's answer that fails fails the turn and tells the other episodes' running tools to stop (their signal aborts with that failure)", async () => {
    let stoppedWith: unknown = null;
    const env = defineEnvironment({
      ...calcEnv(),
      step: async (_turn, _history, ctx) => {
        if (ctx.promptId === 'p0') throw new RangeError('the judge crashed');
        // p1's step runs until it is told to stop
        await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve(), { once: true }));
        stoppedWith = ctx.signal.reason;
        return { observations: [], done: true };
      },
    });
    await assert.rejects(
      runEpisodes(
        [start('p0', 0, '2*3='), start('p1', 0, '2*4=')],
        options(env, scripted({ 'p0/0': ['<a>6</a>$'], 'p1/0': ['<a>8</a>$'] })),
      ),
      /the judge crashed/,
    );
    await new Promise((r) => setImmediate(r));
    assert.ok(stoppedWith instanceof RangeError, `p1's step was stopped by p0's failure (reason ${String(stoppedWith)})`);
  });

  it('6 episodes calling a slow tool in the same turn: all 6 calls in flight at once by default (toolConcurrency 8), 2 with toolConcurrency 2, and the episodes equal the one-at-a-time run', async () => {
    const all = slowCalc();
    const together = await runEpisodes(starts(), options(all.env, scripted(scripts())));
    assert.equal(all.max(), N, "every episode's call overlaps the others");
    assert.notDeepEqual(all.finished, [...all.finished].sort(), 'the calls finished out of episode order');

    const two = slowCalc();
    const bounded = await runEpisodes(starts(), options(two.env, scripted(scripts()), { toolConcurrency: 2 }));
    assert.equal(two.max(), 2);

    const one = slowCalc();
    const sequential = await runEpisodes(starts(), options(one.env, scripted(scripts()), { toolConcurrency: 1 }));
    assert.equal(one.max(), 1);
    assert.deepEqual(one.finished, ['p0', 'p1', 'p2', 'p3', 'p4', 'p5']);
    const strip = (out: typeof together) => out.map((e) => ({ ...e, seconds: 0 }));
    assert.deepEqual(strip(together), strip(sequential));
    assert.deepEqual(strip(bounded), strip(sequential));
    assert.deepEqual(
      together.map((e) => e.observations[0]),
      ['6', '9', '12', '15', '18', '21'],
    );
  });

  it("a tool retrying its infrastructure failures holds up only its own episode: the others' calls run meanwhile", async () => {
    const order: string[] = [];
    let p0Runs = 0;
    const env = calcEnv({
      run: async (args, ctx) => {
        order.push(`${ctx.promptId} starts`);
        if (ctx.promptId === 'p0' && ++p0Runs < 3) throw new ToolInfraError('busy');
        return String(args.expression);
      },
    });
    const s = [start('p0', 0, '2*3='), start('p1', 0, '2*3='), start('p2', 0, '2*3=')];
    const gen = scripted({ 'p0/0': ['<c>2*3</c>', '<a>6</a>$'], 'p1/0': ['<c>2*3</c>', '<a>6</a>$'], 'p2/0': ['<c>2*3</c>', '<a>6</a>$'] });
    const waits: string[] = [];
    const out = await runEpisodes(s, options(env, gen, { sleep: async (ms) => void waits.push(`${ms}`) }));
    assert.deepEqual(order.slice(0, 3), ['p0 starts', 'p1 starts', 'p2 starts'], "p1 and p2 did not wait for p0's retries");
    assert.equal(out[0]!.toolCalls[0]!.attempts, 3);
    assert.ok(out.every((e) => e.finishReason === 'stop'));
  });
});

describe('episodes: durable turn by turn', () => {
  it('resuming from the state recorded after turn 1 generates only turns 2.. and ends equal to the uninterrupted run', async () => {
    const scripts = {
      'p0/0': ['<c>12*34</c>', '<c>408*2</c>', '<a>816</a>$'],
      'p1/0': ['<c>5*5</c>', '<a>25</a>$'],
    };
    const s = [start('p0', 0, '12*34*2='), start('p1', 0, '5*5=')];
    const recorded: EpisodesCheckpoint[] = [];
    const whole = await runEpisodes(
      s,
      options(calcEnv(), scripted(scripts), { onTurn: async (c) => void recorded.push(JSON.parse(JSON.stringify(c))) }),
    );
    assert.deepEqual(
      recorded.map((c) => c.turnsCompleted),
      [1, 2, 3],
    );
    const resumedGen = scripted(scripts);
    // the resumed policy starts at turn 1: its scripts advance past turn 0
    resumedGen.turnOf.set('p0/0', 1);
    resumedGen.turnOf.set('p1/0', 1);
    const resumed = await runEpisodes(s, options(calcEnv(), resumedGen, { resume: recorded[0]! }));
    assert.deepEqual(resumedGen.calls, [2, 1]);
    assert.deepEqual(
      resumed.map((e) => ({ ...e, seconds: 0 })),
      whole.map((e) => ({ ...e, seconds: 0 })),
    );
  });

  it('a turn under a cancellation is not recorded: a tool that answers once the activity is cancelled (a sandbox reporting its killed program as timed out) makes the episodes throw the cancellation, and onTurn never sees that turn', async () => {
    const cancel = new AbortController();
    const killed: Tool['run'] = (_args, ctx) =>
      new Promise<string>((resolve) => {
        ctx.signal.addEventListener('abort', () => resolve('error: timed out after 5000 ms'));
        setTimeout(() => cancel.abort(new Error('activity cancelled')), 5);
      });
    const recorded: EpisodesCheckpoint[] = [];
    await assert.rejects(
      runEpisodes(
        [start('p0', 0, '12*34=')],
        options(calcEnv({ run: killed, timeoutMs: 60_000 }), scripted({ 'p0/0': ['<c>12*34</c>', '<a>408</a>$'] }), {
          signal: cancel.signal,
          onTurn: async (c) => void recorded.push(c),
        }),
      ),
      /^Error: activity cancelled$/,
    );
    assert.deepEqual(recorded, [], 'no turn recorded');
  });

  it('turn t of sample s draws from its own stream: position 0 of turns 0 and 1 differ, and the stream is the same whatever else runs', () => {
    const a = turnStream(5, 2, 'p0', 0, 0).uniform(0);
    const b = turnStream(5, 2, 'p0', 0, 1).uniform(0);
    const c = turnStream(5, 2, 'p0', 1, 0).uniform(0);
    assert.notEqual(a, b);
    assert.notEqual(a, c);
    assert.equal(turnStream(5, 2, 'p0', 0, 1).uniform(0), b);
  });
});

describe('episodes: exact tokens with a BPE tokenizer', () => {
  it("Qwen3 fixture: the policy's non-canonical tokens would change in a decode/encode round trip, and the rollouts row holds the sampled ones", async () => {
    const dir = await loadTokenizerDir('test/fixtures/hf/qwen3');
    const bpe = dir.tokenizer;
    const enc = (x: string) => bpe.encode(x, { addSpecialTokens: false });
    // the policy spells its call one character per token (a valid, non-canonical tokenisation)
    const callText = '<tool_call>\n{"name": "calc", "arguments": {"expression": "2*3"}}\n</tool_call>';
    const spelled = [...callText].flatMap((ch) => enc(ch));
    const imEnd = enc('<|im_end|>');
    assert.equal(imEnd.length, 1);
    const turn0 = [...spelled, ...imEnd];
    assert.equal(bpe.decode(spelled), callText);
    assert.notDeepEqual(enc(bpe.decode(spelled)), spelled, 'a round trip through text re-tokenises the turn differently');
    const answer = [...enc('<answer>6</answer>'), ...imEnd];

    const env = defineEnvironment({
      ...calcEnv(),
      format: 'hermes',
      tools: calcEnv().tools,
      limits: { maxTurns: 3, maxTotalTokens: 4000, maxSeconds: 60 },
    });
    const template = dir.chatTemplate!;
    const chat = { template, tools: env.tools };
    const p = start('p0', 0, 'What is 2*3?', bpe);
    const gen = scripted({ 'p0/0': [turn0, answer] }, bpe, imEnd[0]!);
    const [e] = await runEpisodes([p], {
      ...options(env, gen),
      params: parseSamplingParams({ max_tokens: 200 }),
      stopIds: imEnd,
      vocabSize: bpe.vocabSize,
      encode: enc,
      decode: (ids) => bpe.decode(ids),
      chat,
    });
    assert.equal(e!.finishReason, 'stop');
    assert.equal(e!.toolCalls[0]!.output, '6');
    const cols = episodeColumns(e!, (ids) => bpe.decode(ids), new Set(imEnd));
    const ends = cols.segment_ends as number[];
    const ids = cols.completion_token_ids as number[];
    assert.deepEqual(ids.slice(0, ends[0]), turn0, 'turn 0 exactly as sampled, <|im_end|> included');
    assert.deepEqual(ids.slice(ends[1]), answer, 'turn 1 exactly as sampled');
    assert.deepEqual(gen.sampled, [turn0, answer]);
    // the observation segment is the template's suffix, tokenised once
    const obs = bpe.decode(ids.slice(ends[0], ends[1]));
    assert.match(obs, /^\n<\|im_start\|>tool\n6<\|im_end\|>\n<\|im_start\|>assistant\n$/);
    // what a re-tokenised conversation would have trained on instead
    const retokenised = enc(bpe.decode(ids));
    assert.notDeepEqual(retokenised, ids);
    assert.ok(readFileSync('test/fixtures/hf/qwen3/tokenizer.json').length > 0);
  });
});
