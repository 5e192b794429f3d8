/**
 * Every activity durable-rl registers, by name. Workers pass `createActivities()` to
 * `Worker.create`; workflows refer to these by name through `proxyActivities<typeof ...>`.
 */
import { planAnnotation, annotateShard, finalizeAnnotation } from './reward/annotate-activities.js';

export function createActivities() {
  return { planAnnotation, annotateShard, finalizeAnnotation };
}
