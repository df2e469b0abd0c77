import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Kills any process a test file left running (see the file).
    globalSetup: ["test/helpers/global-setup.ts"],
    testTimeout: 30_000,
    // A file's beforeAll starts its processes one after another; on a loaded
    // machine (and on the first run, with tsx's cache cold) each start can
    // take seconds. An upper bound only: it costs nothing when they are quick.
    hookTimeout: 60_000,
    // Tests start real processes; two cores are shared by every file.
    fileParallelism: true,
    maxWorkers: 2,
  },
});
