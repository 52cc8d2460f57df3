import { describeSnapshotContract } from "../contract/snapshot.contract.js";
import { startTestServer } from "../support/test-server.js";

describeSnapshotContract("memory backend over gRPC", {
  start: (env) => startTestServer({ backend: "memory", env }),
});
describeSnapshotContract("memory backend over Connect/JSON on HTTP/1.1", {
  start: (env) => startTestServer({ backend: "memory", env }),
  protocol: "connect-http1",
  heavy: false,
});
