/**
 * The activities' failure for bad input: a non-retryable ApplicationFailure of type `BadInput`
 * whose message says what is wrong and how to fix it. Retrying cannot fix it, so the workflow puts
 * the run in `blocked` (needs-user) until the user fixes the cause and says `retry`, or `stop`.
 */
import { ApplicationFailure } from '@temporalio/common';

export const badInput = (message: string): ApplicationFailure => ApplicationFailure.nonRetryable(message, 'BadInput');
