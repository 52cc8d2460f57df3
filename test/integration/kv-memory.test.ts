import { describeKvContract } from "../contract/kv.contract.js";
import { startTestServer } from "../support/test-server.js";

describeKvContract("memory backend over gRPC", {
  start: () => startTestServer({ backend: "memory" }),
});
describeKvContract("memory backend over Connect/JSON on HTTP/1.1", {
  start: () => startTestServer({ backend: "memory" }),
  protocol: "connect-http1",
});
