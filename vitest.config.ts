import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // tfjs keeps one global engine per process: give each test file its own fork.
    pool: 'forks',
    // The JSON report lets .ci/run print a plain "N passed, N failed" closing line.
    reporters: ['default', 'json'],
    outputFile: { json: 'test-results/vitest.json' },
    testTimeout: 60_000,
    hookTimeout: 120_000,
    exclude: process.env.EDGETUNE_SKIP_SLOW ? ['test/**/*.slow.test.ts', 'node_modules/**'] : ['node_modules/**'],
  },
});
