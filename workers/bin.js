#!/usr/bin/env node
/**
 * The `durable-rl` executable (package.json `bin`, so `npx durable-rl <command>` after an install):
 * the command line of `cli.ts`, run through tsx's loader registered in this process — the project
 * ships TypeScript and has no build step, and tsx is one of its dependencies. The same loader
 * serves the modules the CLI imports later (a run's reward and environment modules, the engine's
 * worker thread: activities/model/session-host.ts registers it there the same way).
 */
import { register } from 'tsx/esm/api';

register();
await import('./cli.ts');
