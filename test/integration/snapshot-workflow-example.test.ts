/**
 * Runs examples/workflow.ts (the README's workflow example) as a user would,
 * `node --import tsx examples/workflow.ts <url>`, against a real server on
 * each backend, then checks what it left behind through the API.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { describe, expect, inject, it } from "vitest";
import { ExecutionStatus, SnapshotService } from "../../src/gen/latchkey/v1/snapshot_pb.js";
import { type Backend, startTestServer } from "../support/test-server.js";

const run = promisify(execFile);

describe("examples/workflow.ts", () => {
  it.each<Backend>(["memory", "redis"])("runs to completion (%s backend)", async (backend) => {
    const server = await startTestServer({ backend, redisUrl: inject("redisUrl") });
    const sessions = new Http2SessionManager(server.baseUrl);
    try {
      const { stdout } = await run(
        process.execPath,
        ["--import", "tsx", "examples/workflow.ts", server.baseUrl],
        { timeout: 30_000 },
      );
      const lines = stdout.trim().split("\n");
      expect(lines[0]).toMatch(/^saved (order-[0-9a-f]{8}) at sequence 1, event_seq 1$/);
      expect(lines).toContain('charged: sequence 2, event_seq 2, checkpoint "after-payment"');
      expect(lines).toContain("patched: sequence 3");
      expect(lines).toContain("resumed by ada: status RUNNING");
      expect(lines).toContain("recovered from sequence 3: replayed OrderShipped");
      expect(lines[lines.length - 1]).toBe("completed at sequence 4");

      const id = /^saved (\S+)/.exec(lines[0]!)![1]!;
      const snapshots = createClient(
        SnapshotService,
        createGrpcTransport({ baseUrl: server.baseUrl, sessionManager: sessions }),
      );
      const final = (await snapshots.load({ executionId: id })).snapshot!;
      expect(final.status).toBe(ExecutionStatus.COMPLETED);
      expect(final.eventSeq).toBe(3n);
      expect(final.expireTime).toBeDefined();
      expect(JSON.parse(new TextDecoder().decode(final.state))).toEqual({
        order: id,
        total: 42.5,
        paid: true,
        shipped: true,
        note: "gift wrap",
        approvedBy: "ada",
      });
      const checkpoints = await snapshots.listCheckpoints({ executionId: id });
      expect(checkpoints.checkpoints.map((c) => c.name)).toEqual(["after-payment"]);
    } finally {
      sessions.abort();
      await server.close();
    }
  });
});
