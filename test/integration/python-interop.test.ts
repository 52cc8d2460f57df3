/**
 * Python grpcio (Debian's python3-grpcio, /usr/bin/python3) against the
 * real server on the lean gRPC path: stubs are generated at test time with
 * grpc_tools.protoc, then test/python/kv_client.py runs its steps.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generatePythonStubs, pythonGrpcAvailable, runPythonSteps } from "../support/python.js";
import { type RunningServer, startLatchkey } from "../support/transport.js";

const available = pythonGrpcAvailable("python-interop");

describe.skipIf(!available)("Python grpcio interop", () => {
  let server: RunningServer;
  let gen: string;

  beforeAll(async () => {
    gen = await generatePythonStubs(["latchkey/v1/common.proto", "latchkey/v1/kv.proto"], true);
    server = await startLatchkey();
  });
  afterAll(() => server?.close());

  it("puts, gets, reads ErrorInfo, honours deadlines and sends gzip", async () => {
    const steps = await runPythonSteps("test/python/kv_client.py", [server.target, gen]);
    expect(steps.put).toMatchObject({ revision: 1, version: 1 });
    expect(steps.get).toMatchObject({ value: "hello", version: 1 });
    expect(steps.precondition).toMatchObject({
      code: "ABORTED",
      info: { reason: "VERSION_MISMATCH", domain: "latchkey.dev" },
    });
    expect(steps.deadline).toMatchObject({ code: "DEADLINE_EXCEEDED", seen: ["SERVING"] });
    expect(steps.gzip).toMatchObject({ same: true, length: 50000 });
  });
});
