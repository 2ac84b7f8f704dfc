import { defineConfig } from 'vitest/config';

// The JSON report is what .ci/run adds up into its 'N passed, N failed' line; making the demo model takes seconds.
export default defineConfig({
  test: { reporters: ['default', ['json', { outputFile: 'test-results.json' }]], testTimeout: 60_000 },
});
