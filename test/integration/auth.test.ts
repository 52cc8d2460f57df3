/**
 * Bearer-token auth on both paths: grpc-js on the lean gRPC path and a
 * Connect client (Connect protocol, through the adapter). Missing or bad
 * tokens are UNAUTHENTICATED, a read-only token may not write
 * (PERMISSION_DENIED), tenants see separate data, health needs no token.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, ConnectError } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Health } from "../../src/gen/grpc/health/v1/health_pb.js";
import { KvService } from "../../src/gen/latchkey/v1/kv_pb.js";
import { connectClients } from "../support/clients.js";
import {
  decodeStatusDetails,
  grpcClient,
  type RunningServer,
  startLatchkey,
  unary,
} from "../support/transport.js";

const WRITER = "acme-writer-token-0001";
const READER = "acme-reader-token-0001";
const OTHER = "globex-writer-token-01";

function tokensFile(): string {
  const dir = mkdtempSync(join(tmpdir(), "latchkey-auth-"));
  const path = join(dir, "tokens.json");
  writeFileSync(
    path,
    JSON.stringify({
      tokens: [
        { token: WRITER, tenant: "acme", roles: ["read", "write"] },
        { token: READER, tenant: "acme", roles: ["read"] },
        { token: OTHER, tenant: "globex", roles: ["write"] },
      ],
    }),
  );
  return path;
}

const bearer = (token: string) => {
  const m = new grpc.Metadata();
  m.set("authorization", `Bearer ${token}`);
  return m;
};

describe("auth", () => {
  let server: RunningServer;
  let kv: ReturnType<typeof grpcClient>;

  beforeAll(async () => {
    server = await startLatchkey({ LATCHKEY_AUTH_FILE: tokensFile() });
    kv = grpcClient("latchkey.v1.KvService", server.target);
  });
  afterAll(async () => {
    kv.close();
    await server.close();
  });

  describe("over native gRPC (lean path, grpc-js)", () => {
    it("refuses a missing or unknown token with UNAUTHENTICATED", async () => {
      const none = await unary(kv, "get", { key: "a" });
      expect(none.status.code).toBe(grpc.status.UNAUTHENTICATED);
      const reason = decodeStatusDetails(
        none.status.metadata.get("grpc-status-details-bin")[0] as Buffer,
      ).infos[0]?.reason;
      expect(reason).toBe("UNAUTHENTICATED");
      const bad = await unary(
        kv,
        "get",
        { key: "a" },
        { metadata: bearer("not-a-token-at-all!!") },
      );
      expect(bad.status.code).toBe(grpc.status.UNAUTHENTICATED);
    });

    it("refuses a write with a read-only token with PERMISSION_DENIED", async () => {
      const out = await unary(
        kv,
        "put",
        { key: "a", value: Buffer.from("v") },
        { metadata: bearer(READER) },
      );
      expect(out.status.code).toBe(grpc.status.PERMISSION_DENIED);
      const read = await unary(kv, "get", { key: "a" }, { metadata: bearer(READER) });
      expect(read.status.code).toBe(grpc.status.OK);
    });

    it("keeps tenants apart", async () => {
      await unary(
        kv,
        "put",
        { key: "shared", value: Buffer.from("acme") },
        { metadata: bearer(WRITER) },
      );
      const other = await unary<{ kv: unknown }>(
        kv,
        "get",
        { key: "shared" },
        { metadata: bearer(OTHER) },
      );
      expect(other.status.code).toBe(grpc.status.OK);
      expect(other.response?.kv).toBeNull();
      await unary(
        kv,
        "put",
        { key: "shared", value: Buffer.from("globex") },
        { metadata: bearer(OTHER) },
      );
      const mine = await unary<{ kv: { value: Buffer } }>(
        kv,
        "get",
        { key: "shared" },
        {
          metadata: bearer(READER),
        },
      );
      expect(mine.response?.kv.value.toString()).toBe("acme");
    });

    it("needs no token for health", async () => {
      const health = grpcClient("grpc.health.v1.Health", server.target);
      try {
        const out = await unary<{ status: string }>(health, "check", { service: "" });
        expect(out.response?.status).toBe("SERVING");
      } finally {
        health.close();
      }
    });
  });

  describe("over the Connect protocol (adapter)", () => {
    const codeOf = (p: Promise<unknown>) =>
      p.then(
        () => 0,
        (e: unknown) => ConnectError.from(e).code,
      );

    it("refuses missing and unknown tokens, and writes with a read-only token", async () => {
      const anonymous = connectClients(server.baseUrl, "connect");
      const stranger = connectClients(server.baseUrl, "connect-http1", {
        authorization: "Bearer not-a-token-at-all!!",
      });
      const reader = connectClients(server.baseUrl, "connect", {
        authorization: `Bearer ${READER}`,
      });
      try {
        expect(await codeOf(anonymous.client(KvService).get({ key: "a" }))).toBe(
          Code.Unauthenticated,
        );
        expect(await codeOf(stranger.client(KvService).get({ key: "a" }))).toBe(
          Code.Unauthenticated,
        );
        expect(
          await codeOf(reader.client(KvService).put({ key: "a", value: new Uint8Array([1]) })),
        ).toBe(Code.PermissionDenied);
        expect(await codeOf(reader.client(KvService).get({ key: "a" }))).toBe(0);
        expect((await anonymous.client(Health).check({ service: "" })).status).toBe(1);
      } finally {
        anonymous.close();
        stranger.close();
        reader.close();
      }
    });

    it("keeps tenants apart", async () => {
      const acme = connectClients(server.baseUrl, "connect", { authorization: `Bearer ${WRITER}` });
      const globex = connectClients(server.baseUrl, "grpc-web", {
        authorization: `Bearer ${OTHER}`,
      });
      try {
        await acme.client(KvService).put({ key: "c/only-acme", value: new Uint8Array([1]) });
        expect((await globex.client(KvService).get({ key: "c/only-acme" })).kv).toBeUndefined();
        expect((await acme.client(KvService).get({ key: "c/only-acme" })).kv?.value).toEqual(
          new Uint8Array([1]),
        );
      } finally {
        acme.close();
        globex.close();
      }
    });
  });
});
