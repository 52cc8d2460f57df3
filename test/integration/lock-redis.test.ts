import { inject } from "vitest";
import { describeLockContract } from "../contract/lock.contract.js";
import { startTestServer } from "../support/test-server.js";

describeLockContract("redis backend over gRPC", {
  start: (env) => startTestServer({ backend: "redis", redisUrl: inject("redisUrl"), env }),
});
