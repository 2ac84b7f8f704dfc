import { defineConfig } from 'vitest/config';

// The JSON report is what .ci/run adds up into its 'N passed, N failed' line. The tests start whole nodes,
// load real models on a shared CPU and install packages with npm: generous timeouts, and no test measures time.
export default defineConfig({
  test: {
    reporters: ['default', ['json', { outputFile: 'test-results.json' }]],
    testTimeout: 60_000,
    hookTimeout: 300_000,
  },
});
