import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    // Two cores: more workers only add contention to timing-sensitive tests.
    maxWorkers: 2,
    testTimeout: 30_000,
    hookTimeout: 30_000,
    projects: [
      {
        extends: true,
        test: { name: "unit", include: ["test/unit/**/*.test.ts"] },
      },
      {
        extends: true,
        test: {
          name: "integration",
          include: ["test/integration/**/*.test.ts"],
          globalSetup: ["test/support/global-redis.ts"],
        },
      },
    ],
  },
});
