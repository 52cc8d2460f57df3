import { describeWatchContract } from "../contract/watch.contract.js";
import { startTestServer } from "../support/test-server.js";

describeWatchContract("memory backend over gRPC", {
  start: (env) => startTestServer({ backend: "memory", env }),
});
