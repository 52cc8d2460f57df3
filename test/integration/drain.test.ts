/**
 * Graceful drain of the real process: `node --import tsx src/main.ts`,
 * SIGTERM while calls are in flight on both paths and a watch stream is
 * open. In-flight unary calls complete, new connections are refused, a
 * KV watch ends at once with UNAVAILABLE SHUTTING_DOWN and its
 * resume_revision, other streams end so after the grace period, and the
 * process exits 0.
 */
import { type ChildProcess, spawn } from "node:child_process";
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { afterAll, describe, expect, it } from "vitest";
import { PutRequestSchema, PutResponseSchema } from "../../src/gen/latchkey/v1/kv_pb.js";
import { freePort } from "../support/redis-server.js";
import { decodeStatusDetails, frame, grpcClient, rawCall, unary } from "../support/transport.js";

/** Everything the process printed (pino JSON lines), for the log checks. */
let printed = "";

function startProcess(port: number): Promise<ChildProcess> {
  const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts"], {
    env: {
      ...process.env,
      LATCHKEY_HOST: "127.0.0.1",
      LATCHKEY_PORT: String(port),
      LATCHKEY_ADMIN_PORT: "0",
      LATCHKEY_LOG_LEVEL: "info",
      LATCHKEY_SHUTDOWN_GRACE_MS: "700",
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  return new Promise((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error(`no listening log: ${out}`)), 20_000);
    child.stdout!.on("data", (d: Buffer) => {
      printed += d.toString();
      out += d.toString();
      if (out.includes("latchkey listening")) {
        clearTimeout(timer);
        resolve(child);
      }
    });
    child.stderr!.on("data", (d: Buffer) => {
      out += d.toString();
    });
    child.once("exit", (code) => reject(new Error(`exited early with ${code}: ${out}`)));
  });
}

const exitOf = (child: ChildProcess) =>
  new Promise<number | null>((resolve) => {
    if (child.exitCode !== null) resolve(child.exitCode);
    else child.once("exit", (code) => resolve(code));
  });

describe("graceful drain on SIGTERM", () => {
  let child: ChildProcess | undefined;
  afterAll(() => {
    if (child && child.exitCode === null) child.kill("SIGKILL");
  });

  it("finishes in-flight calls, refuses new connections, ends streams, exits 0", async () => {
    const port = await freePort();
    child = await startProcess(port);
    const baseUrl = `http://127.0.0.1:${port}`;

    // A watch stream (lean gRPC path).
    const health = grpcClient("grpc.health.v1.Health", `127.0.0.1:${port}`);
    const watch = health.watch({ service: "" }) as grpc.ClientReadableStream<{ status: string }>;
    const seen: string[] = [];
    watch.on("data", (m: { status: string }) => seen.push(m.status));
    watch.on("error", () => {});
    const watchStatus = new Promise<grpc.StatusObject>((resolve) => watch.on("status", resolve));
    await new Promise((r) => watch.once("data", r));

    // A KV watch (lean gRPC path) at a revision past 0: on SIGTERM it must end
    // at once, resumable, not after the grace period.
    const kv = grpcClient("latchkey.v1.KvService", `127.0.0.1:${port}`);
    const written = await unary<{ header: { revision: string } }>(kv, "put", {
      key: "drain/watched",
      value: Buffer.from("v"),
    });
    const revision = BigInt(written.response!.header.revision);
    const watches = grpcClient("latchkey.v1.WatchService", `127.0.0.1:${port}`);
    const kvWatch = watches.watch({ prefix: "drain/" }) as grpc.ClientReadableStream<unknown>;
    kvWatch.on("data", () => {});
    kvWatch.on("error", () => {});
    const ended: string[] = [];
    const kvWatchStatus = new Promise<grpc.StatusObject>((resolve) =>
      kvWatch.on("status", (status) => {
        ended.push("watch");
        resolve(status);
      }),
    );
    void watchStatus.then(() => ended.push("health"));
    await new Promise((r) => kvWatch.once("data", r));

    // An Acquire waiting for a held lock: it must end UNAVAILABLE SHUTTING_DOWN, never hang.
    const locks = grpcClient("latchkey.v1.LockService", `127.0.0.1:${port}`);
    const lockRequest = (owner: string) => ({
      name: "drain/lock",
      owner,
      ttl: { seconds: 30 },
      waitTimeout: { seconds: 30 },
    });
    const held = await unary<{ acquired: boolean; header: { revision: string } }>(
      locks,
      "acquire",
      lockRequest("holder"),
    );
    expect(held.response?.acquired).toBe(true);
    // The grant is the tenant's last change before the drain.
    const lastRevision = BigInt(held.response!.header.revision);
    expect(lastRevision).toBe(revision + 1n);
    const waiting = unary(locks, "acquire", lockRequest("waiter"));
    await new Promise((r) => setTimeout(r, 100));

    // Two unary calls in flight: headers sent, bodies not yet (lean gRPC and Connect).
    const session = http2.connect(baseUrl);
    session.on("error", () => {});
    const putBody = (key: string) =>
      toBinary(PutRequestSchema, create(PutRequestSchema, { key, value: Buffer.from("v") }));
    const grpcCall = rawCall(
      baseUrl,
      "/latchkey.v1.KvService/Put",
      frame(putBody("drain/grpc")),
      {},
      {
        session,
        delayBodyMs: 300,
      },
    );
    const connectReq = session.request({
      ":method": "POST",
      ":path": "/latchkey.v1.KvService/Put",
      "content-type": "application/proto",
    });
    const connectChunks: Buffer[] = [];
    let connectStatus = 0;
    connectReq.on("response", (h) => {
      connectStatus = Number(h[":status"]);
    });
    connectReq.on("data", (c: Buffer) => connectChunks.push(c));
    const connectDone = new Promise<void>((resolve) => connectReq.on("close", () => resolve()));
    setTimeout(() => connectReq.end(putBody("drain/connect")), 300);

    // An idle HTTP/1.1 keep-alive connection.
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const { closed: h1Closed } = await new Promise<{ closed: Promise<void> }>((resolve, reject) => {
      const req = http.request(
        {
          host: "127.0.0.1",
          port,
          method: "POST",
          path: "/grpc.health.v1.Health/Check",
          headers: { "content-type": "application/json" },
          agent,
        },
        (res) => {
          res.resume();
          res.on("end", () =>
            resolve({
              closed: new Promise<void>((closed) => req.socket?.once("close", () => closed())),
            }),
          );
        },
      );
      req.on("error", reject);
      req.end("{}");
    });

    await new Promise((r) => setTimeout(r, 50));
    child.kill("SIGTERM");
    const exit = exitOf(child);

    // New connections are refused once the drain started.
    await new Promise((r) => setTimeout(r, 100));
    const refused = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, "127.0.0.1");
      socket.once("connect", () => {
        socket.destroy();
        resolve(false);
      });
      socket.once("error", () => resolve(true));
    });
    expect(refused).toBe(true);
    await h1Closed;

    // The in-flight unary calls complete normally.
    const grpcResult = await grpcCall;
    expect(grpcResult.grpcStatus).toBe(0);
    await connectDone;
    expect(connectStatus).toBe(200);
    expect(fromBinary(PutResponseSchema, Buffer.concat(connectChunks)).kv?.key).toBe(
      "drain/connect",
    );

    // Health went NOT_SERVING; the stream is cut after the grace period.
    const status = await watchStatus;
    expect(seen).toContain("NOT_SERVING");
    expect(status.code).toBe(grpc.status.UNAVAILABLE);
    const details = decodeStatusDetails(
      status.metadata.get("grpc-status-details-bin")[0] as Buffer,
    );
    expect(details.infos[0]?.reason).toBe("SHUTTING_DOWN");

    const waited = await waiting;
    expect(waited.status.code).toBe(grpc.status.UNAVAILABLE);
    expect(
      decodeStatusDetails(waited.status.metadata.get("grpc-status-details-bin")[0] as Buffer)
        .infos[0]?.reason,
    ).toBe("SHUTTING_DOWN");

    // The KV watch ended first, resumable right after the tenant's last revision.
    const kvStatus = await kvWatchStatus;
    expect(ended).toEqual(["watch", "health"]);
    expect(kvStatus.code).toBe(grpc.status.UNAVAILABLE);
    const kvInfo = decodeStatusDetails(
      kvStatus.metadata.get("grpc-status-details-bin")[0] as Buffer,
    ).infos[0];
    expect(kvInfo?.reason).toBe("SHUTTING_DOWN");
    expect(kvInfo?.metadata.resume_revision).toBe(String(lastRevision + 1n));

    expect(await exit).toBe(0);
    // A drain is routine: the streams it ends are not logged as errors, one by one.
    const errorLines = printed
      .split("\n")
      .filter((line) => line.includes('"level":50') && line.includes("SHUTTING_DOWN"));
    expect(errorLines).toEqual([]);
    health.close();
    kv.close();
    watches.close();
    locks.close();
    session.destroy();
    agent.destroy();
  });
});
