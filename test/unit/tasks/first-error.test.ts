/**
 * The tasks' failure-point hook (`Task.firstError`, used by the rl phase's `retry` option, R^3L):
 * where a completion first leaves every answer the task's reward accepts.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { additionFirstError } from '../../../activities/tasks/addition.js';
import { getTask } from '../../../activities/tasks/tasks.js';

describe('addition firstError', () => {
  it('reversed sum 168 (accepted: "861", "8610", "86100", ...): "862" → 2, "8613" → 3, "x861" → 0, "" → 0, " 86x" → 3; "861" and "8610" → null', () => {
    const f = (c: string) => additionFirstError('168', c, true);
    assert.deepEqual(['862', '8613', 'x861', '', ' 86x', '861', '8610', '86100 '].map(f), [2, 3, 0, 0, 3, null, null, null]);
  });

  it('a correct answer cut short fails where it ended: "86" → 2 (reversed 168), "16 " → 2 (168)', () => {
    assert.equal(additionFirstError('168', '86', true), 2);
    assert.equal(additionFirstError('168', '16 ', false), 2);
  });

  it('plain sum 168 (accepted: "168", "0168", ...): "0169" → 3, "2" → 0, "1" → 1; "00168" → null; sum 0: "01" → 1, "00" → null', () => {
    const f = (ref: string, c: string) => additionFirstError(ref, c, false);
    assert.deepEqual(
      [f('168', '0169'), f('168', '2'), f('168', '1'), f('168', '00168'), f('0', '01'), f('0', '00')],
      [3, 0, 1, null, 1, null],
    );
  });

  it('an answer in tags → null (the task cannot trace the position); a reference not in digits throws', () => {
    assert.equal(additionFirstError('168', '<answer>17</answer>', false), null);
    assert.throws(() => additionFirstError('1.5', '1', false), /whole number in digits/);
  });

  it('the task exposes it with its own `reverse`: 7+5 padded to 2 digits writes "21"; "22" → 1, "31" → 0, "21" → null; countdown has none', () => {
    const t = getTask('addition', { minDigits: 1, maxDigits: 1, reverse: true, pad: true });
    const item = { promptId: 'p', prompt: '7+5=', reference: '12', metadata: {} };
    assert.equal(t.sftTarget(item), '21');
    assert.deepEqual(
      ['22', '31', '21'].map((c) => t.firstError!(item, c)),
      [1, 0, null],
    );
    assert.equal(getTask('countdown').firstError, undefined);
  });
});
