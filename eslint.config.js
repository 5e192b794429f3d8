// Lint configuration: typescript-eslint's recommended rules on every source folder, plus the
// rule that keeps workflow code deterministic (no Node built-ins, no I/O libraries).
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

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
  {
    files: ['workflows/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { group: ['node:*', 'fs', 'path', 'os', 'crypto', 'child_process'], message: 'Workflow code must be deterministic: no Node built-ins.' },
            { group: ['**/activities/**', '@aws-sdk/*', 'onnxruntime-node', 'apache-arrow', 'pino'], message: 'Workflow code passes URIs, it never touches data: import only types from activities.' , allowTypeImports: true },
          ],
        },
      ],
    },
  },
);
