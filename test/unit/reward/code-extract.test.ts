import { test } from 'node:test';
import assert from 'node:assert/strict';
import { extractProgram } from '../../../activities/reward/code.js';

test('the program is the last fenced block of the language, else the text after </think>', () => {
  assert.deepEqual(extractProgram('```python\na = 1\n```\nthen\n```py\nb = 2\n```'), { code: 'b = 2\n', language: 'python' });
  assert.deepEqual(extractProgram('```js\nx()\n```\n```python\ny()\n```', 'javascript'), { code: 'x()\n', language: 'javascript' });
  assert.deepEqual(extractProgram('```\nplain()\n```', 'python'), { code: 'plain()\n', language: 'python' });
  assert.deepEqual(extractProgram('<think>plan</think>\nprint(1)', 'python'), { code: 'print(1)', language: 'python' });
  assert.deepEqual(extractProgram(''), { code: '', language: undefined });
});
