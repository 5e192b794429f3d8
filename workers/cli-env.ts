/**
 * Environment defaults of the command line, applied before any other module loads (it is the
 * first import of cli.ts): the CLI talks to people, so library logs start at warnings unless
 * DURABLE_RL_LOG_LEVEL says otherwise; and the pinned AWS SDK's notice that its releases after
 * January 2027 need Node 22 is silenced (the README says it once).
 */
process.env.DURABLE_RL_LOG_LEVEL ??= 'warn';
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
export {};
