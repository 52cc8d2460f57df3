import { describeLockContract } from "../contract/lock.contract.js";
import { startTestServer } from "../support/test-server.js";

describeLockContract("memory backend over gRPC", {
  start: (env) => startTestServer({ backend: "memory", env }),
});
