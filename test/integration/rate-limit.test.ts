/**
 * Per-tenant rate limit (LATCHKEY_TENANT_RATE_LIMIT / _BURST), through the
 * real server on both paths: native gRPC (lean path) and the Connect
 * protocol (adapter). A tenant over its limit gets RESOURCE_EXHAUSTED
 * RATE_LIMIT with retry_after_ms and a RetryInfo, other tenants and health
 * checks are untouched, and after the advertised wait the tenant is served
 * again (real time: the bucket refills at one call per second here).
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RetryInfoSchema } from "../../src/gen/google/rpc/error_details_pb.js";
import {
  Health,
  HealthCheckResponse_ServingStatus,
} from "../../src/gen/grpc/health/v1/health_pb.js";
import { KvService } from "../../src/gen/latchkey/v1/kv_pb.js";
import { type Clients, connectClients, type Protocol } from "../support/clients.js";
import { expectError, failure } from "../support/errors.js";
import { type RunningServer, startLatchkey } from "../support/transport.js";

const BURST = 3;
const TOKENS = {
  acme: "acme-token-00000000001",
  globex: "globex-token-000000001",
  initech: "initech-token-00000001",
} as const;

function tokensFile(): string {
  const path = join(mkdtempSync(join(tmpdir(), "latchkey-rate-")), "tokens.json");
  const tokens = Object.entries(TOKENS).map(([tenant, token]) => ({
    token,
    tenant,
    roles: ["read", "write"],
  }));
  writeFileSync(path, JSON.stringify({ tokens }));
  return path;
}

describe("per-tenant rate limit", () => {
  let server: RunningServer;
  const opened: Clients[] = [];
  const clientsOf = (tenant: keyof typeof TOKENS, protocol: Protocol): Clients => {
    const clients = connectClients(server.baseUrl, protocol, {
      authorization: `Bearer ${TOKENS[tenant]}`,
    });
    opened.push(clients);
    return clients;
  };

  beforeAll(async () => {
    server = await startLatchkey({
      LATCHKEY_AUTH_FILE: tokensFile(),
      LATCHKEY_TENANT_RATE_LIMIT: "1",
      LATCHKEY_TENANT_RATE_BURST: String(BURST),
    });
  });
  afterAll(async () => {
    for (const clients of opened) clients.close();
    await server.close();
  });

  it("refuses calls over the burst with RATE_LIMIT, retry_after_ms and RetryInfo, then serves again", async () => {
    const kv = clientsOf("acme", "grpc").client(KvService);
    for (let i = 0; i < BURST; i++) await kv.get({ key: "a" });

    const metadata = await expectError(kv.get({ key: "a" }), Code.ResourceExhausted, "RATE_LIMIT");
    expect(metadata.limit).toBe("1");
    const retryAfterMs = Number(metadata.retry_after_ms);
    expect(retryAfterMs).toBeGreaterThan(0);
    expect(retryAfterMs).toBeLessThanOrEqual(1000);

    const { error } = await failure(kv.put({ key: "a", value: new Uint8Array([1]) }));
    const [retry] = error.findDetails(RetryInfoSchema);
    const delayMs =
      Number(retry?.retryDelay?.seconds ?? -1n) * 1000 + (retry?.retryDelay?.nanos ?? 0) / 1e6;
    expect(delayMs).toBeGreaterThan(0);
    expect(delayMs).toBeLessThanOrEqual(1000);

    await sleep(delayMs + 50);
    expect((await kv.get({ key: "a" })).header?.revision).toBeGreaterThanOrEqual(0n);
  });

  it("limits each tenant on its own bucket, on the Connect protocol too", async () => {
    const globex = clientsOf("globex", "connect").client(KvService);
    for (let i = 0; i < BURST; i++) await globex.get({ key: "b" });
    await expectError(globex.get({ key: "b" }), Code.ResourceExhausted, "RATE_LIMIT");

    // Another tenant still has its whole burst.
    const initech = clientsOf("initech", "grpc-web").client(KvService);
    for (let i = 0; i < BURST; i++) await initech.get({ key: "b" });
    await expectError(initech.get({ key: "b" }), Code.ResourceExhausted, "RATE_LIMIT");
  });

  it("never limits health checks", async () => {
    const health = clientsOf("acme", "grpc").client(Health);
    for (let i = 0; i < 4 * BURST; i++) {
      expect((await health.check({ service: "" })).status).toBe(
        HealthCheckResponse_ServingStatus.SERVING,
      );
    }
  });

  it("answers RATE_LIMIT before the handler runs: a refused write changes nothing", async () => {
    const kv = clientsOf("initech", "grpc").client(KvService);
    // initech's bucket is empty from the previous test (one call per second refills it).
    const refused = await kv.put({ key: "never", value: new Uint8Array([1]) }).catch((e) => e);
    expect(refused).toBeInstanceOf(ConnectError);
    expect((refused as ConnectError).code).toBe(Code.ResourceExhausted);
    await sleep(1100);
    expect((await kv.get({ key: "never" })).kv).toBeUndefined();
  });
});
