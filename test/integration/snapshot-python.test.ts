/**
 * Python grpcio (Debian's python3-grpcio, /usr/bin/python3) drives one
 * execution through the SnapshotService of a real server on each backend:
 * stubs are generated at test time with grpc_tools.protoc (Debian's protoc
 * 3.6 compiles snapshot.proto: wrappers, not proto3 `optional`), then
 * test/python/snapshot_client.py runs its steps.
 */
import { randomBytes } from "node:crypto";
import { beforeAll, describe, expect, inject, it } from "vitest";
import { generatePythonStubs, pythonGrpcAvailable, runPythonSteps } from "../support/python.js";
import { type Backend, startTestServer } from "../support/test-server.js";

const available = pythonGrpcAvailable("snapshot-python");

describe.skipIf(!available)("Python grpcio drives the SnapshotService", () => {
  let gen: string;

  beforeAll(async () => {
    gen = await generatePythonStubs(["latchkey/v1/common.proto", "latchkey/v1/snapshot.proto"]);
  });

  it.each<Backend>(["memory", "redis"])(
    "saves, loads, patches, appends, suspends and resumes (%s backend)",
    async (backend) => {
      const server = await startTestServer({ backend, redisUrl: inject("redisUrl") });
      try {
        const id = `py-${randomBytes(4).toString("hex")}`;
        const steps = await runPythonSteps("test/python/snapshot_client.py", [
          `127.0.0.1:${server.port}`,
          gen,
          id,
        ]);
        expect(steps.save).toMatchObject({ sequence: 1, status: "RUNNING" });
        expect(steps.load).toMatchObject({
          state: { step: "charge", attempt: 1 },
          metadata: { client: "python" },
          state_size: 32,
        });
        expect(steps.stale).toMatchObject({
          code: "ABORTED",
          info: {
            reason: "SEQUENCE_STALE",
            domain: "latchkey.dev",
            metadata: { current_sequence: "1" },
          },
        });
        expect(steps.patch).toMatchObject({ sequence: 2 });
        expect(steps.events).toMatchObject({ first_seq: 1, last_seq: 1, types: ["charged"] });
        expect(steps.suspend).toMatchObject({ status: "SUSPENDED", reason: "approval" });
        expect((steps.suspend as unknown as { token_length: number }).token_length).toBe(48);
        expect(steps.resume).toMatchObject({
          status: "RUNNING",
          state: { step: "charge", attempt: 2 },
          input: { approved: true },
        });
        expect(steps.reuse).toMatchObject({
          code: "FAILED_PRECONDITION",
          info: { reason: "INVALID_TOKEN" },
        });
        expect(steps.final).toMatchObject({
          sequence: 2,
          status: "RUNNING",
          input: { approved: true },
        });
      } finally {
        await server.close();
      }
    },
  );
});
