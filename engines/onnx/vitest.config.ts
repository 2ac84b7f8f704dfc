import { defineConfig } from 'vitest/config';

// The JSON report is what .ci/run adds up into its 'N passed, N failed' line. The tests load real models
// on a shared CPU: generous timeouts, and no test measures time.
export default defineConfig({
  test: {
    reporters: ['default', ['json', { outputFile: 'test-results.json' }]],
    testTimeout: 60_000,
    hookTimeout: 120_000,
  },
});
