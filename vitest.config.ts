import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // tfjs keeps one global engine per process: give each test file its own fork.
    pool: 'forks',
    testTimeout: 60_000,
    hookTimeout: 120_000,
    exclude: process.env.EDGETUNE_SKIP_SLOW ? ['test/**/*.slow.test.ts', 'node_modules/**'] : ['node_modules/**'],
  },
});
