// Lint configuration: typescript-eslint's recommended rules on every source folder, plus each
// folder's import rule as its README.md states it ("May import: ..."), as no-restricted-imports
// patterns: the rule that keeps workflow code deterministic (no Node built-ins, no I/O libraries),
// and which project folders each folder may reach. A block for a file replaces the folder's block
// for that rule (ESLint does not merge rule options), so a file's exception repeats the folder's
// other restrictions.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/**
 * A relative import that reaches top-level folder `name` (a regex alternative such as
 * '(workers|test)') from any depth: `../../workers/x.js` from activities/rollout/. No folder
 * inside activities/ shares a name with a top-level folder, so the name decides.
 */
function reaching(name) {
  return `^(\\.\\./)+${name}\\/`;
}

/**
 * One no-restricted-imports block: `files`, the README that states the rule, the rule in words
 * (the message, unless a pattern brings its own), the forbidden imports.
 */
function restrict(files, readme, rule, forbidden) {
  return {
    files,
    rules: {
      'no-restricted-imports': ['error', { patterns: forbidden.map((f) => ({ ...f, message: `${f.message ?? rule} (${readme}).` })) }],
    },
  };
}

const ACTIVITY_FOLDERS = [
  'advantage',
  'checkpoint',
  'common',
  'data',
  'env',
  'learner',
  'model',
  'report',
  'reward',
  'rollout',
  'run',
  'sandbox',
  'store',
  'tasks',
];

/** Relative imports of the stage folders other than `allowed`, from a file directly in activities/<folder>/. */
function otherStages(allowed) {
  const names = ACTIVITY_FOLDERS.filter((f) => !allowed.includes(f));
  return { regex: `^\\.\\./(${names.join('|')})\\/` };
}

/** Nothing under activities/ imports the process, workflow, tooling or test folders. */
const outsideActivities = { regex: reaching('(workflows|workers|infra|bench|test)') };

function importRules() {
  const io = { group: ['node:*', 'onnxruntime-node', '@aws-sdk/*', 'apache-arrow'] };
  const modelOutside = { regex: '^(\\.\\./){2,}' }; // from model/arch/ or model/graphs/: outside model/
  return [
    restrict(
      ['workflows/**/*.ts'],
      'workflows/README.md',
      'Workflow code may import @temporalio/workflow, @temporalio/common and types from activities/ only',
      [
        {
          group: ['node:*', 'fs', 'path', 'os', 'crypto', 'child_process'],
          message: 'Workflow code must be deterministic: no Node built-ins',
        },
        {
          group: ['**/activities/**', '@aws-sdk/*', 'onnxruntime-node', 'apache-arrow', 'hyparquet', 'pino'],
          allowTypeImports: true,
          message: 'Workflow code passes URIs, it never touches data: import only types from activities',
        },
        { regex: reaching('(workers|infra|bench|test)') },
      ],
    ),

    restrict(
      ['activities/common/**/*.ts'],
      'activities/common/README.md',
      'activities/common/ imports nothing from other project folders',
      [{ regex: '^\\.\\./' }],
    ),

    restrict(
      ['activities/sandbox/**/*.ts'],
      'activities/sandbox/README.md',
      'activities/sandbox/ may import ../common/ only among the project folders',
      [otherStages(['sandbox', 'common']), outsideActivities],
    ),

    restrict(
      ['activities/store/**/*.ts'],
      'activities/store/README.md',
      'activities/store/ may import ../common/ only among the project folders',
      [otherStages(['store', 'common']), outsideActivities],
    ),

    restrict(
      ['activities/report/**/*.ts'],
      'activities/report/README.md',
      'activities/report/ may import ../store/ only among the project folders',
      [otherStages(['report', 'store']), outsideActivities],
    ),

    restrict(
      ['activities/model/*.ts'],
      'activities/model/README.md',
      'activities/model/ may import ../common/ only among the project folders',
      [
        otherStages(['model', 'common']),
        outsideActivities,
        {
          regex: '^(?!\\.|node:)(?!(onnxruntime-node|onnx-proto|@huggingface/(tokenizers|jinja)|zod)$)',
          message:
            'activities/model/ may import only the packages its README names: onnxruntime-node, onnx-proto, @huggingface/tokenizers, @huggingface/jinja, zod',
        },
      ],
    ),
    restrict(
      ['activities/model/arch/*.ts'],
      'activities/model/arch/README.md',
      'an architecture may import ../graph, ../ops, ../attention, ../config, ../rope and ../lora (the model definition only, no I/O)',
      [{ regex: '^\\.\\./(?!(graph|ops|attention|config|rope|lora)\\.js$)' }, modelOutside, io],
    ),
    restrict(
      ['activities/model/graphs/*.ts'],
      'activities/model/graphs/README.md',
      'a graph builder may import ../graph, ../ops, ../autodiff, ../arch/, ../losses, ../config, ../quantize and ../../common/config (no I/O, no onnxruntime: that is ../engine.ts)',
      [
        { regex: '^\\.\\./(?!\\.\\./|(graph|ops|autodiff|losses|config|quantize)\\.js$|arch\\/)' },
        { regex: '^(\\.\\./){2,}(?!common\\/config\\.js$)' },
        io,
      ],
    ),

    restrict(
      ['activities/tasks/**/*.ts'],
      'activities/tasks/README.md',
      'activities/tasks/ may import ../common/ and the reward API (../reward/types, extract, rational), never the model, the store or workflow code',
      [{ regex: '^\\.\\./(?!common\\/|reward\\/(types|extract|rational)\\.js$)' }, outsideActivities],
    ),

    restrict(
      ['activities/env/**/*.ts'],
      'activities/env/README.md',
      "activities/env/ may import ../common/, ../model/'s tokenizer and chat templates (tokenizer.ts, chat.ts), the reward library (never its activity bridges annotate-*.ts, reward-shard.ts; tools that run code go through its code.ts, never ../sandbox/ directly) and the tasks' split, expression and types modules",
      [
        { regex: '^\\.\\./(?!common\\/|model\\/(tokenizer|chat)\\.js$|reward\\/|tasks\\/(split|expression|types)\\.js$)' },
        { regex: '^\\.\\./reward\\/(annotate-[a-z-]+|reward-shard)\\.js$' },
        outsideActivities,
      ],
    ),

    // rollout: the sampling library vs the stage's activities
    restrict(
      ['activities/rollout/**/*.ts'],
      'activities/rollout/README.md',
      'activities/rollout/ may import ../common/, ../model/, ../store/ and ../env/; only the stage files (policy.ts, rollout-shard.ts, evaluate.ts) also ../run/, ../checkpoint/ and ../reward/',
      [otherStages(['rollout', 'common', 'model', 'store', 'env']), outsideActivities],
    ),
    restrict(
      ['activities/rollout/policy.ts', 'activities/rollout/rollout-shard.ts', 'activities/rollout/evaluate.ts'],
      'activities/rollout/README.md',
      'the rollout stage files (policy.ts, rollout-shard.ts, evaluate.ts) may import ../common/, ../model/, ../store/, ../env/, ../run/, ../checkpoint/ and ../reward/',
      [otherStages(['rollout', 'common', 'model', 'store', 'env', 'run', 'checkpoint', 'reward']), outsideActivities],
    ),

    // reward: the library vs its bridges to the store, the run and the model
    ...rewardRules(),

    restrict(
      ['activities/advantage/**/*.ts'],
      'activities/advantage/README.md',
      'an advantage estimator may import ../common/ and ../rollout/tree-plan only; step-advantages.ts also ../store/ and ../run/',
      [{ regex: '^\\.\\./(?!common\\/|rollout\\/tree-plan\\.js$)' }, outsideActivities],
    ),
    restrict(
      ['activities/advantage/step-advantages.ts'],
      'activities/advantage/README.md',
      'activities/advantage/step-advantages.ts may import ../common/, ../rollout/tree-plan, ../store/ and ../run/',
      [{ regex: '^\\.\\./(?!common\\/|store\\/|run\\/|rollout\\/tree-plan\\.js$)' }, outsideActivities],
    ),
    restrict(
      ['activities/advantage/step-kl-reward.ts'],
      'activities/advantage/README.md',
      'activities/advantage/step-kl-reward.ts may import ../common/, ../store/ and ../learner/kl-reward (the KL-in-reward helper)',
      [{ regex: '^\\.\\./(?!common\\/|store\\/|learner\\/kl-reward\\.js$)' }, outsideActivities],
    ),

    restrict(
      ['activities/learner/**/*.ts'],
      'activities/learner/README.md',
      'a loss may import ../common/ and the op library of ../model/ (losses, losses-reward, ops; graph types), never the engine; only learner-update.ts runs the engine',
      [
        { regex: '^\\.\\./(?!common\\/|model\\/(losses|losses-reward|ops|graph)\\.js$)' },
        { regex: '^\\.\\./model\\/graph\\.js$', allowTypeImports: true },
        outsideActivities,
      ],
    ),
    restrict(
      ['activities/learner/learner-update.ts'],
      'activities/learner/README.md',
      'activities/learner/learner-update.ts may import ../common/, ../model/, ../store/, ../run/ and ../checkpoint/',
      [otherStages(['learner', 'common', 'model', 'store', 'run', 'checkpoint']), outsideActivities],
    ),
    restrict(
      ['activities/learner/reference-logprobs.ts'],
      'activities/learner/README.md',
      "activities/learner/reference-logprobs.ts (the reference-scoring activity, on the learner's engine) may import ../common/, ../store/ and ../run/",
      [otherStages(['learner', 'common', 'store', 'run']), outsideActivities],
    ),
    restrict(
      ['activities/learner/preference-update.ts'],
      'activities/learner/README.md',
      "activities/learner/preference-update.ts (the learner activity's DPO phases) may import ../common/, ../model/, ../store/, ../run/ and ../data/",
      [otherStages(['learner', 'common', 'model', 'store', 'run', 'data']), outsideActivities],
    ),
    restrict(
      ['activities/learner/reward-model-update.ts'],
      'activities/learner/README.md',
      "activities/learner/reward-model-update.ts (the learner activity's reward_model phase) may import ../common/, ../model/, ../run/ and ../data/",
      [otherStages(['learner', 'common', 'model', 'run', 'data']), outsideActivities],
    ),

    restrict(
      ['activities/data/**/*.ts'],
      'activities/data/README.md',
      'activities/data/ (datasets) may import ../common/, ../store/ (reading s3:// files), the Task type of ../tasks/types and the reward API and exact_match of ../reward/ (types, verifiable) among the project folders',
      [
        otherStages(['data', 'common', 'store', 'tasks', 'reward']),
        { regex: '^\\.\\./tasks\\/(?!types\\.js$)' },
        { regex: '^\\.\\./reward\\/(?!(types|verifiable)\\.js$)' },
        outsideActivities,
      ],
    ),

    restrict(
      ['activities/checkpoint/**/*.ts'],
      'activities/checkpoint/README.md',
      'activities/checkpoint/ may import ../common/, ../store/, ../model/ and ../run/',
      [otherStages(['checkpoint', 'common', 'store', 'model', 'run']), outsideActivities],
    ),

    restrict(
      ['activities/run/**/*.ts'],
      'activities/run/README.md',
      "activities/run/ may import the libraries of activities/ (of ../rollout/ only sampling.ts, tree-plan.ts and episode.ts), never ../checkpoint/, ../report/ or a stage's activities",
      [
        { regex: '^\\.\\./(checkpoint|report)\\/' },
        { regex: '^\\.\\./rollout\\/(?!sampling\\.js$|tree-plan\\.js$|episode\\.js$)' },
        { regex: '^\\.\\./(advantage|learner|reward)\\/(step-advantages|learner-update|reward-shard|annotate-[a-z-]+)\\.js$' },
        outsideActivities,
      ],
    ),

    restrict(
      ['infra/**/*.ts'],
      'infra/README.md',
      'infra/ may import activities/common/ and workflows/search-attributes only among the project folders',
      [
        { regex: '^\\.\\./activities\\/(?!common\\/)' },
        { regex: '^\\.\\./workflows\\/(?!search-attributes\\.js$)' },
        { regex: '^\\.\\./(workers|bench|test)\\/' },
      ],
    ),

    restrict(['workers/**/*.ts'], 'workers/README.md', 'workers/ may import activities/, workflows/ and infra/; never bench/ or test/', [
      { regex: '^\\.\\./(bench|test)\\/' },
    ]),

    restrict(['bench/**/*.ts'], 'bench/README.md', 'bench/ may import activities/, workers/ and infra/; never test/', [
      { regex: '^\\.\\./test\\/' },
    ]),
  ];
}

function rewardRules() {
  const readme = 'activities/reward/README.md';
  const bridges = {
    'activities/reward/annotate-*.ts': ['store'],
    'activities/reward/reward-shard.ts': ['store', 'run', 'tasks'],
    'activities/reward/reward-model.ts': ['model'],
    'activities/reward/builtins.ts': ['tasks'],
    'activities/reward/code.ts': ['sandbox'],
  };
  const library = restrict(
    ['activities/reward/**/*.ts'],
    readme,
    'the reward library imports ../common/ only; annotate-*.ts may import ../store/, reward-shard.ts ../store/, ../run/ and ../tasks/, reward-model.ts ../model/, builtins.ts ../tasks/, code.ts ../sandbox/',
    [otherStages(['reward', 'common']), outsideActivities],
  );
  return [
    library,
    ...Object.entries(bridges).map(([file, extra]) =>
      restrict(
        [file],
        readme,
        `${file.replace('activities/reward/', '')} may import ../common/ and ${extra.map((f) => `../${f}/`).join(', ')}`,
        [otherStages(['reward', 'common', ...extra]), outsideActivities],
      ),
    ),
  ];
}

export default tseslint.config(
  { ignores: ['node_modules/**', 'coverage/**', '.cache/**', 'out/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { ecmaVersion: 2022, sourceType: 'module' },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
      'no-constant-condition': ['error', { checkLoops: false }],
    },
  },
  ...importRules(),
);
