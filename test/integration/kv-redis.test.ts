import { inject } from "vitest";
import { describeKvContract } from "../contract/kv.contract.js";
import { startTestServer } from "../support/test-server.js";

describeKvContract("redis backend over gRPC", {
  start: () => startTestServer({ backend: "redis", redisUrl: inject("redisUrl") }),
});
