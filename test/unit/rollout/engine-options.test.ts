/**
 * The rollout engine's weights placement (activities/rollout/policy.ts `rolloutEngineOptions`,
 * `onDevice` in model/engine.ts): on the CPU the weights are graph inputs (one decode session for
 * every policy version); with an accelerator first among the execution providers they are baked
 * into the session, so they cross to the device once per version instead of on every decode step.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { onDevice } from '../../../activities/model/engine.js';
import { rolloutEngineOptions } from '../../../activities/rollout/policy.js';
import { parseRunConfig } from '../../../activities/run/config.js';

test('onDevice: cpu first (or nothing) is the host; cuda, webgpu or a provider object named cuda first is a device', () => {
  assert.equal(onDevice(['cpu']), false);
  assert.equal(onDevice(['cpu', 'cuda']), false, 'the first provider is the one sessions prefer');
  assert.equal(onDevice([]), false);
  assert.equal(onDevice(['cuda', 'cpu']), true);
  assert.equal(onDevice(['webgpu']), true);
  assert.equal(onDevice([{ name: 'cuda', deviceId: 0 }, 'cpu']), true);
  assert.equal(onDevice([{ name: 'cpu' }]), false);
});

test('the rollout feeds weights as inputs on the default CPU config and bakes them with cuda first', () => {
  const cpu = parseRunConfig({ name: 'cpu-run' });
  assert.deepEqual(rolloutEngineOptions({ config: cpu }), { bakeWeights: false });
  const gpu = parseRunConfig({ name: 'gpu-run', engine: { executionProviders: ['cuda', 'cpu'] } });
  assert.deepEqual(rolloutEngineOptions({ config: gpu }), { bakeWeights: true });
});
