import { inject } from "vitest";
import { describeWatchContract } from "../contract/watch.contract.js";
import { startTestServer } from "../support/test-server.js";

describeWatchContract("redis backend over gRPC", {
  start: (env) => startTestServer({ backend: "redis", redisUrl: inject("redisUrl"), env }),
});
