import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Kills any process a test file left running (see the file).
    globalSetup: ["test/helpers/global-setup.ts"],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Tests start real processes; two cores are shared by every file.
    fileParallelism: true,
    maxWorkers: 2,
  },
});
