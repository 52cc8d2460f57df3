/**
 * Deadlines on every protocol, through the real server: a watch whose
 * deadline runs out ends DEADLINE_EXCEEDED (never as a clean end of
 * stream) on the Connect, gRPC-Web and both gRPC paths, and is counted so
 * in the metrics; deadlines too long for a Node timer (2^31 ms and more, as
 * a client with a one-year deadline sends) are cut to the maximum instead
 * of firing at once.
 */
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LockService } from "../../src/gen/latchkey/v1/lock_pb.js";
import { WatchService } from "../../src/gen/latchkey/v1/watch_pb.js";
import { connectClients, type Protocol } from "../support/clients.js";
import { expectError } from "../support/errors.js";
import { metricValue, type RunningServer, startLatchkey } from "../support/transport.js";

const PROTOCOLS: Protocol[] = ["connect-http1", "connect", "grpc-web", "grpc"];

describe.each([true, false])("deadlines (lean gRPC path %s)", (lean) => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await startLatchkey({ LATCHKEY_GRPC_LEAN: String(lean) }, { admin: true });
  });
  afterAll(() => server.close());

  it.each(PROTOCOLS)(
    "ends a watch DEADLINE_EXCEEDED when its deadline runs out (%s)",
    async (protocol) => {
      // The deadline goes as a header only: a client-side timer would end the
      // call first, and this is about what the server answers.
      const header = protocol.startsWith("connect")
        ? { "connect-timeout-ms": "300" }
        : { "grpc-timeout": "300m" };
      const clients = connectClients(server.baseUrl, protocol, header);
      try {
        const stream = clients.client(WatchService).watch({ prefix: "deadline/" });
        const drain = async () => {
          for await (const _ of stream) {
            // progress and events until the deadline
          }
        };
        await expectError(drain(), Code.DeadlineExceeded, "DEADLINE_EXCEEDED");
      } finally {
        clients.close();
      }
    },
  );

  it("counts those watches DEADLINE_EXCEEDED, not OK", async () => {
    const text = await (await fetch(`http://127.0.0.1:${server.adminPort}/metrics`)).text();
    const labels = { method: "Watch", code: "DEADLINE_EXCEEDED" };
    expect(metricValue(text, "latchkey_rpc_calls_total", labels)).toBe(PROTOCOLS.length);
    expect(metricValue(text, "latchkey_rpc_calls_total", { method: "Watch", code: "OK" })).toBe(
      undefined,
    );
  });

  // A waiting Acquire lasts its wait_timeout (300 ms): long enough for a
  // deadline timer that fires at once to cut it.
  const HELD = { name: "deadline/lock", owner: "holder", ttl: { seconds: 10n } };
  const waitingAcquire = { name: "deadline/lock", owner: "waiter", ttl: { seconds: 10n } };

  it.each([
    ["connect", "connect-timeout-ms", "9999999999"],
    ["connect", "connect-timeout-ms", "2147483648"],
    ["grpc-web", "grpc-timeout", "8760H"],
    ["grpc", "grpc-timeout", "99999999H"],
  ] as const)("serves a unary call over %s whose %s is %s", async (protocol, header, value) => {
    const holder = connectClients(server.baseUrl, "grpc");
    const waiter = connectClients(server.baseUrl, protocol, { [header]: value });
    try {
      expect((await holder.client(LockService).acquire(HELD)).acquired).toBe(true);
      const answer = await waiter
        .client(LockService)
        .acquire({ ...waitingAcquire, waitTimeout: { nanos: 300_000_000 } });
      expect(answer.acquired).toBe(false);
    } finally {
      holder.close();
      waiter.close();
    }
  });
});
