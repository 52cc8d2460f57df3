/**
 * Python grpcio (Debian's python3-grpcio, /usr/bin/python3) against the
 * real server (the lean gRPC path, and Connect's for the KeepAlive bidi
 * stream): stubs are generated at test time with grpc_tools.protoc, then
 * test/python/kv_client.py and lock_watch_client.py run their steps.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generatePythonStubs, pythonGrpcAvailable, runPythonSteps } from "../support/python.js";
import { type RunningServer, startLatchkey } from "../support/transport.js";

const available = pythonGrpcAvailable("python-interop");

describe.skipIf(!available)("Python grpcio interop", () => {
  let server: RunningServer;
  let gen: string;

  beforeAll(async () => {
    gen = await generatePythonStubs(
      [
        "latchkey/v1/common.proto",
        "latchkey/v1/kv.proto",
        "latchkey/v1/snapshot.proto",
        "latchkey/v1/watch.proto",
        "latchkey/v1/lease.proto",
        "latchkey/v1/lock.proto",
      ],
      true,
    );
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

  it("watches a prefix, keeps a lease alive over a bidi stream, and fences with a lock", async () => {
    const steps = await runPythonSteps("test/python/lock_watch_client.py", [server.target, gen]);
    const putRevision = steps.watch!.put_revision;
    expect(steps.watch).toMatchObject({
      events: [{ kind: "PUT", key: "pyw/1", revision: putRevision }],
    });
    expect(steps.lease).toMatchObject({ keepalive_ttls: [5, 5, 5], found: true, key_gone: true });
    expect(steps.lock).toMatchObject({
      first_acquired: true,
      other_acquired: false,
      holder: "py-1",
      released: "RELEASED",
      second_acquired: true,
      tokens_increase: true,
      stale: { code: "ABORTED", info: { reason: "FENCE_STALE", domain: "latchkey.dev" } },
    });
  });
});
