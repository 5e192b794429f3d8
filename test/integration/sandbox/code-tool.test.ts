/**
 * The environments' code-execution tool (activities/env/code-tool.ts) on this host's real sandbox:
 * an episode whose policy writes a Python program gets what it printed as its observation, run in
 * the bubblewrap layer; the program's own failures are observations; a sandbox that cannot start
 * is a ToolInfraError, which the episode retries alone and, when it persists, ends "tool_failure".
 * The policy is scripted (each turn's text), the tokenizer a char tokenizer: no model needed.
 * bubblewrap is installed first when missing, as in the escape suite (infra/bubblewrap.ts).
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { PRINTABLE_ASCII } from '../../../activities/env/builtin.js';
import { codeExecutionTool, codeObservation } from '../../../activities/env/code-tool.js';
import { defineEnvironment, ToolInfraError, type Environment, type Tool, type ToolContext } from '../../../activities/env/types.js';
import type { Generation } from '../../../activities/model/generate.js';
import { CharTokenizer } from '../../../activities/model/tokenizer.js';
import { runSandboxed } from '../../../activities/reward/code.js';
import { runEpisodes, type EpisodeOptions, type TurnKey } from '../../../activities/rollout/episode.js';
import type { SequenceJob } from '../../../activities/rollout/policy.js';
import { parseSamplingParams } from '../../../activities/rollout/sampling.js';
import { sandboxHost } from '../../../activities/sandbox/sandbox.js';
import { ensureBubblewrap } from '../../../infra/bubblewrap.js';

const tok = CharTokenizer.fromAlphabet(PRINTABLE_ASCII + '\n');
const EOS = tok.eosId;
const ctx = (): ToolContext => ({ signal: new AbortController().signal, seed: 1, promptId: 'p0', sampleId: 0, turn: 0 });

before(() => {
  ensureBubblewrap({ progress: (m) => process.stderr.write(`${m}\n`) });
  const host = sandboxHost();
  assert.ok(host.layers.includes('bubblewrap'), `bubblewrap does not run on this host: ${host.why.bubblewrap}`);
});

/** An environment of one code tool (tag `py`), tagged format. */
function codeEnv(tool: Tool): Environment {
  return defineEnvironment({
    name: 'code-test',
    tools: [tool],
    limits: { maxTurns: 3, maxTotalTokens: 2000, maxSeconds: 600 },
    format: 'tagged',
    reset: (row) => [{ role: 'user', content: row.prompt }],
  });
}

/** Runs one episode whose policy writes `turns` (a trailing `$`: the turn ends with EOS). */
async function episode(env: Environment, turns: string[], over: Partial<EpisodeOptions> = {}) {
  const prompt = 'sum of 0..9?';
  let t = 0;
  const generate = async (jobs: readonly SequenceJob[], maxNewTokens: number, _who: readonly TurnKey[]): Promise<Generation[]> =>
    jobs.map((job) => {
      const s = turns[t++]!;
      const ids = [...tok.encode(s.replace(/\$$/, ''), { addSpecialTokens: false }), ...(s.endsWith('$') ? [EOS] : [])];
      const out: Generation = { tokens: [], logprobs: [], finishReason: 'length' };
      for (let pos = 0; pos < maxNewTokens && pos < ids.length; pos++) {
        out.tokens.push(ids[pos]!);
        out.logprobs.push(-0.5);
        if (ids[pos] === EOS || job.ends?.(ids[pos]!, pos)) {
          out.finishReason = 'stop';
          break;
        }
      }
      return out;
    });
  const [e] = await runEpisodes(
    [
      {
        promptId: 'p0',
        sampleId: 0,
        row: { promptId: 'p0', prompt, reference: '45', metadata: {} },
        messages: [{ role: 'user', content: prompt }],
        promptTokens: tok.encode(prompt),
      },
    ],
    {
      env,
      seed: 1,
      step: 0,
      params: parseSamplingParams({ max_tokens: 200 }),
      stopIds: [EOS],
      vocabSize: tok.vocabSize,
      encode: (text) => tok.encode(text, { addSpecialTokens: false }),
      decode: (ids) => tok.decode(ids),
      chat: null,
      generate,
      ...over,
    },
  );
  return e!;
}

test('an episode whose policy calls the python tool: its program runs in the bubblewrap sandbox and the observation (loss mask 0) is what it printed', async () => {
  const env = codeEnv(codeExecutionTool({ tag: 'py' }));
  const e = await episode(env, ['<py>import os\nprint(sum(range(10)), os.uname().nodename)</py>', '<a>45</a>$']);
  assert.equal(e.finishReason, 'stop');
  assert.equal(e.turns, 2);
  // the sandbox's own host name: the program ran inside bubblewrap (bwrap-args.ts --hostname sandbox)
  assert.equal(e.toolCalls[0]!.output, '45 sandbox\n');
  assert.equal(e.toolCalls[0]!.attempts, 1);
  assert.deepEqual(e.observations, ['45 sandbox\n']);
  assert.deepEqual(e.segmentRoles, ['policy', 'observation', 'policy']);
  assert.equal(tok.decode(e.tokens.slice(e.segmentEnds[0], e.segmentEnds[1])), '<o>45 sandbox\n</o>');
});

test("the program's own failures are observations: an exception with its traceback, the memory limit, the time limit, and a program that prints bwrap's error prefix itself", async () => {
  const tool = codeExecutionTool({ tag: 'py', timeoutMs: 1_500, memoryMb: 64 });
  const raised = await tool.run({ code: 'print("before")\nraise ValueError("bad input")' }, ctx());
  assert.match(raised, /^error: exit status 1\nbefore\nTraceback[\s\S]*ValueError: bad input\n$/);
  assert.match(await tool.run({ code: 'x = bytearray(2 * 1024**3)' }, ctx()), /^error: exit status 1\n[\s\S]*MemoryError/);
  assert.match(await tool.run({ code: 'while True:\n    pass' }, ctx()), /^error: timed out after 1500 ms$/);
  // output that looks like the sandbox failing is still the program's: it ran, so it is an observation
  assert.equal(
    await tool.run({ code: 'import sys\nsys.stderr.write("bwrap: cannot mount\\n")\nsys.exit(1)' }, ctx()),
    'error: exit status 1\nbwrap: cannot mount\n',
  );
  // long output is cut for the episode, saying how much
  const long = await codeExecutionTool({ maxObservationChars: 20 }).run({ code: 'print("x" * 100)' }, ctx());
  assert.equal(long, `${'x'.repeat(20)}… (81 more characters)`);
});

test('a sandbox that cannot start is infrastructure: ToolInfraError, retried alone by the episode, "tool_failure" when it never starts, the call answered when a retry starts', async () => {
  // the interpreter is not installed on this worker
  const missing = codeExecutionTool({ tag: 'py', pythonCommand: 'python-not-installed' });
  await assert.rejects(
    Promise.resolve(missing.run({ code: 'print(1)' }, ctx())),
    (err: unknown) =>
      err instanceof ToolInfraError &&
      /python: no sandbox could run the program: code sandbox: cannot run python-not-installed/.test(err.message),
  );
  const failed = await episode(codeEnv(missing), ['<py>print(45)</py>', '<a>45</a>$'], {
    toolRetry: { maxAttempts: 3, initialBackoffMs: 1, backoffCoefficient: 1, maxBackoffMs: 1 },
  });
  assert.equal(failed.finishReason, 'tool_failure');
  assert.equal(failed.toolCalls[0]!.attempts, 3);
  assert.equal(failed.toolCalls[0]!.output, null);
  assert.deepEqual(failed.segmentRoles, ['policy'], 'no observation: the episode is not scored on it');

  // the interpreter cannot start under the sandbox's limits (1 MiB of memory): the program never ran
  const starved = await runSandboxed('print(1)', '', {
    language: 'python',
    timeoutMs: 5_000,
    memoryMb: 1,
    maxOutputBytes: 4096,
    network: 'prefer',
    pythonCommand: 'python3',
  });
  assert.equal(starved.started, false);
  assert.throws(
    () => codeObservation(starved, { name: 'python', timeoutMs: 5_000, maxOutputBytes: 4096, maxObservationChars: 2_000 }),
    (err: unknown) => err instanceof ToolInfraError && /^python: the sandbox did not start the program \(bubblewrap: /.test(err.message),
  );

  // a fallback-layer sandbox that cannot make its private directory (the temp dir is gone), back on the second attempt
  const fallback = codeExecutionTool({ tag: 'py', sandbox: 'fallback' });
  const saved = process.env.TMPDIR;
  process.env.TMPDIR = join(tmpdir(), 'no-such-dir-for-the-sandbox');
  try {
    await assert.rejects(
      Promise.resolve(fallback.run({ code: 'print(1)' }, ctx())),
      (err: unknown) => err instanceof ToolInfraError && /no sandbox could run the program: .*ENOENT/.test(err.message),
    );
    const recovered = await episode(codeEnv(fallback), ['<py>print(45)</py>', '<a>45</a>$'], {
      sleep: async () => {
        // the machine recovers while the call waits for its retry
        if (saved === undefined) delete process.env.TMPDIR;
        else process.env.TMPDIR = saved;
      },
    });
    assert.equal(recovered.finishReason, 'stop');
    assert.equal(recovered.toolCalls[0]!.attempts, 2);
    assert.equal(recovered.toolCalls[0]!.output, '45\n');
  } finally {
    if (saved === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = saved;
  }
});
