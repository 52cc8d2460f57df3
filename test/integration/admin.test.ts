/**
 * The admin port: /metrics (RPC metrics and Node's default metrics),
 * /healthz, and /readyz following readiness and the drain.
 */
import type * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startRedis } from "../support/redis-server.js";
import {
  eventually,
  grpcClient,
  metricValue,
  type RunningServer,
  startLatchkey,
  unary,
} from "../support/transport.js";

const get = async (port: number | undefined, path: string) => {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: res.status, text: await res.text(), type: res.headers.get("content-type") };
};

describe("admin port", () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await startLatchkey({}, { admin: true });
  });
  afterAll(() => server.close());

  it("serves /healthz and /readyz", async () => {
    expect((await get(server.adminPort, "/healthz")).status).toBe(200);
    expect((await get(server.adminPort, "/readyz")).status).toBe(200);
    expect((await get(server.adminPort, "/nope")).status).toBe(404);
  });

  it("exports RPC metrics from both paths and Node's default metrics", async () => {
    const kv = grpcClient("latchkey.v1.KvService", server.target);
    try {
      await unary(kv, "put", { key: "admin/a", value: Buffer.from("v") });
      await unary(kv, "get", { key: "" });
    } finally {
      kv.close();
    }
    await fetch(`${server.baseUrl}/latchkey.v1.KvService/Get`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ key: "admin/a" }),
    });
    const { status, text, type } = await get(server.adminPort, "/metrics");
    expect(status).toBe(200);
    expect(type).toMatch(/text\/plain/);
    expect(
      metricValue(text, "latchkey_rpc_calls_total", { method: "Put", code: "OK" }),
    ).toBeGreaterThanOrEqual(1);
    expect(
      metricValue(text, "latchkey_rpc_calls_total", { method: "Get", code: "INVALID_ARGUMENT" }),
    ).toBe(1);
    expect(metricValue(text, "latchkey_rpc_calls_total", { method: "Get", code: "OK" })).toBe(1);
    expect(text).toContain("process_cpu_user_seconds_total");
    expect(text).toContain("nodejs_eventloop_lag_seconds");
    expect(metricValue(text, "latchkey_grpc_lean_active_calls")).toBe(0);
  });
});

describe("/readyz", () => {
  it("is 503 while draining", async () => {
    const server = await startLatchkey({ LATCHKEY_SHUTDOWN_GRACE_MS: "400" }, { admin: true });
    const health = grpcClient("grpc.health.v1.Health", server.target);
    // An open stream keeps the drain in its grace period.
    const call = health.watch({ service: "" }) as grpc.ClientReadableStream<unknown>;
    call.on("error", () => {});
    await new Promise((r) => call.once("data", r));
    const closing = server.close();
    await eventually(async () => (await get(server.adminPort, "/readyz")).status === 503);
    expect((await get(server.adminPort, "/healthz")).status).toBe(200);
    await closing;
    health.close();
  });

  it("is 503 when the backend is not ready", async () => {
    const redis = await startRedis();
    const server = await startLatchkey(
      { LATCHKEY_REDIS_URL: redis.url, LATCHKEY_READINESS_POLL_MS: "50" },
      { admin: true },
    );
    try {
      expect((await get(server.adminPort, "/readyz")).status).toBe(200);
      await redis.kill();
      await eventually(async () => (await get(server.adminPort, "/readyz")).status === 503, 5000);
    } finally {
      await server.close();
      await redis.stop();
    }
  });
});
