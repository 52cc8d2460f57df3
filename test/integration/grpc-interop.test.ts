/**
 * @grpc/grpc-js (with proto-loader over proto/) against the real server, on
 * the lean gRPC path and, for comparison, with every stream sent through
 * Connect (LATCHKEY_GRPC_LEAN=false). Raw HTTP/2 requests cover what
 * grpc-js cannot send (delayed bodies, hand-made frames).
 */
import { randomBytes } from "node:crypto";
import { deflateSync, gzipSync } from "node:zlib";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GetRequestSchema, KvService, PutRequestSchema } from "../../src/gen/latchkey/v1/kv_pb.js";
import { WatchService } from "../../src/gen/latchkey/v1/watch_pb.js";
import {
  decodeStatusDetails,
  eventually,
  frame,
  type GrpcClient,
  grpcClient,
  metricValue,
  type RunningServer,
  rawCall,
  startBareServer,
  startLatchkey,
  unary,
} from "../support/transport.js";

const LIMITS = {
  LATCHKEY_MAX_VALUE_BYTES: "4096",
  LATCHKEY_MAX_STATE_BYTES: "4096",
  LATCHKEY_MAX_REQUEST_BYTES: "65536",
};

describe.each([
  ["lean", "true"],
  ["connect", "false"],
])("grpc-js against the %s path", (path, leanFlag) => {
  let server: RunningServer;
  let kv: GrpcClient;
  let health: GrpcClient;

  beforeAll(async () => {
    server = await startLatchkey({ ...LIMITS, LATCHKEY_GRPC_LEAN: leanFlag }, { admin: true });
    kv = grpcClient("latchkey.v1.KvService", server.target);
    health = grpcClient("grpc.health.v1.Health", server.target);
  });
  afterAll(async () => {
    kv.close();
    health.close();
    await server.close();
  });

  const metrics = async () => (await fetch(`http://127.0.0.1:${server.adminPort}/metrics`)).text();

  it("puts and gets", async () => {
    const put = await unary(kv, "put", { key: "interop/a", value: Buffer.from("v1") });
    expect(put.status.code).toBe(grpc.status.OK);
    const got = await unary<{ kv: { value: Buffer; version: string } }>(kv, "get", {
      key: "interop/a",
    });
    expect(got.response?.kv.value.toString()).toBe("v1");
    expect(got.response?.kv.version).toBe("1");
  });

  it("sends errors with an ErrorInfo in grpc-status-details-bin", async () => {
    await unary(kv, "put", { key: "interop/tas", value: Buffer.from("x") });
    const out = await unary(kv, "put", {
      key: "interop/tas",
      value: Buffer.from("y"),
      precondition: { mustNotExist: true },
    });
    expect(out.status.code).toBe(grpc.status.ABORTED);
    const bin = out.status.metadata.get("grpc-status-details-bin")[0] as Buffer;
    const details = decodeStatusDetails(bin);
    expect(details.code).toBe(grpc.status.ABORTED);
    expect(details.infos[0]?.reason).toBe("VERSION_MISMATCH");
    expect(details.infos[0]?.domain).toBe("latchkey.dev");
    expect(details.infos[0]?.metadata.current_version).toBe("1");
  });

  it("sends metadata both ways: authorization in, trailers with binary metadata out", async () => {
    const metadata = new grpc.Metadata();
    metadata.set("x-trace-id", "abc");
    metadata.set("x-blob-bin", Buffer.from([0, 1, 2]));
    const out = await unary(kv, "get", { key: "" }, { metadata });
    expect(out.status.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(
      decodeStatusDetails(out.status.metadata.get("grpc-status-details-bin")[0] as Buffer).infos[0]
        ?.reason,
    ).toBe("INVALID_KEY");
  });

  it("answers an error before any message as trailers-only (lean path)", async () => {
    const body = frame(toBinary(GetRequestSchema, create(GetRequestSchema, { key: "" })));
    const res = await rawCall(server.baseUrl, "/latchkey.v1.KvService/Get", body);
    expect(res.grpcStatus).toBe(Code.InvalidArgument);
    if (path === "lean") {
      expect(res.headers["grpc-status"]).toBe("3");
      expect(res.trailers).toBeUndefined();
      expect(res.data.length).toBe(0);
    }
  });

  it("accepts gzip requests from grpc-js (grpc.default_compression_algorithm)", async () => {
    const gz = grpcClient("latchkey.v1.KvService", server.target, {
      "grpc.default_compression_algorithm": 2,
    });
    try {
      const value = Buffer.alloc(3000, "z");
      const put = await unary(gz, "put", { key: "interop/gz", value });
      expect(put.status.code).toBe(grpc.status.OK);
      const got = await unary<{ kv: { value: Buffer } }>(gz, "get", { key: "interop/gz" });
      expect(got.response?.kv.value.equals(value)).toBe(true);
    } finally {
      gz.close();
    }
  });

  // Connect's adapter knows gzip and brotli, the lean path gzip and deflate
  // (what grpc-js and grpc-core clients send).
  it("decompresses gzip (and deflate) frames and refuses unknown encodings", async () => {
    const message = toBinary(
      PutRequestSchema,
      create(PutRequestSchema, { key: "interop/raw-gz", value: Buffer.from("hello") }),
    );
    const gz = await rawCall(
      server.baseUrl,
      "/latchkey.v1.KvService/Put",
      frame(gzipSync(message), true),
      {
        "grpc-encoding": "gzip",
      },
    );
    expect(gz.grpcStatus).toBe(0);
    if (path === "lean") {
      expect(String(gz.headers["grpc-accept-encoding"])).toMatch(/gzip/);
      const df = await rawCall(
        server.baseUrl,
        "/latchkey.v1.KvService/Put",
        frame(deflateSync(message), true),
        {
          "grpc-encoding": "deflate",
        },
      );
      expect(df.grpcStatus).toBe(0);
    }
    const br = await rawCall(server.baseUrl, "/latchkey.v1.KvService/Put", frame(message), {
      "grpc-encoding": "snappy",
    });
    expect(br.grpcStatus).toBe(Code.Unimplemented);
    if (path === "lean") expect(String(br.headers["grpc-accept-encoding"])).toMatch(/gzip/);
  });

  it("refuses a zip bomb (decompressed size over the limit) with RESOURCE_EXHAUSTED", async () => {
    const bomb = gzipSync(Buffer.alloc(8 * 1024 * 1024));
    expect(bomb.length).toBeLessThan(65536);
    const res = await rawCall(server.baseUrl, "/latchkey.v1.KvService/Put", frame(bomb, true), {
      "grpc-encoding": "gzip",
    });
    expect(res.grpcStatus).toBe(Code.ResourceExhausted);
  });

  it("refuses an oversized request with RESOURCE_EXHAUSTED", async () => {
    const out = await unary(kv, "put", { key: "interop/big", value: Buffer.alloc(100_000) });
    expect(out.status.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    const info = decodeStatusDetails(
      out.status.metadata.get("grpc-status-details-bin")[0] as Buffer,
    ).infos[0];
    expect({ reason: info?.reason, limit: info?.metadata.limit }).toEqual({
      reason: "TOO_LARGE",
      limit: "65536",
    });
    // The connection is still usable.
    expect((await unary(kv, "get", { key: "interop/a" })).status.code).toBe(grpc.status.OK);
  });

  it("tolerates frequent client keepalive pings (no GOAWAY, no reconnect)", async () => {
    const pinging = grpcClient("latchkey.v1.KvService", server.target, {
      "grpc.keepalive_time_ms": 100,
      "grpc.keepalive_timeout_ms": 1000,
      "grpc.keepalive_permit_without_calls": 1,
    });
    try {
      expect((await unary(pinging, "get", { key: "interop/a" })).status.code).toBe(grpc.status.OK);
      const channel = pinging.getChannel();
      const states: grpc.connectivityState[] = [];
      const watchState = () =>
        channel.watchConnectivityState(
          channel.getConnectivityState(false),
          Date.now() + 5000,
          () => {
            states.push(channel.getConnectivityState(false));
          },
        );
      watchState();
      await new Promise((r) => setTimeout(r, 800));
      expect(channel.getConnectivityState(false)).toBe(grpc.connectivityState.READY);
      expect(states).toEqual([]);
      expect((await unary(pinging, "get", { key: "interop/a" })).status.code).toBe(grpc.status.OK);
    } finally {
      pinging.close();
    }
  });

  it("answers an unknown method with UNIMPLEMENTED", async () => {
    const status = await new Promise<grpc.ServiceError>((resolve) => {
      kv.makeUnaryRequest(
        "/latchkey.v1.KvService/Nope",
        (x: Buffer) => x,
        (x: Buffer) => x,
        Buffer.alloc(0),
        (error) => resolve(error as grpc.ServiceError),
      );
    });
    expect(status.code).toBe(grpc.status.UNIMPLEMENTED);
  });

  it("rejects truncated messages with INTERNAL", async () => {
    const body = frame(toBinary(GetRequestSchema, create(GetRequestSchema, { key: "abc" })));
    const res = await rawCall(
      server.baseUrl,
      "/latchkey.v1.KvService/Get",
      body.subarray(0, body.length - 2),
    );
    expect([Code.Internal, Code.InvalidArgument]).toContain(res.grpcStatus);
    if (path === "lean") expect(res.grpcStatus).toBe(Code.Internal);
  });

  it.runIf(path === "lean")(
    "rejects a message that does not decode with INVALID_ARGUMENT, not INTERNAL",
    async () => {
      // Field 1 (key) declared as a 16-byte string with only 2 bytes following.
      const res = await rawCall(
        server.baseUrl,
        "/latchkey.v1.KvService/Get",
        frame(new Uint8Array([0x0a, 0x10, 0x61, 0x62])),
      );
      expect(res.grpcStatus).toBe(Code.InvalidArgument);
    },
  );

  // Connect starts its deadline only once the body is read; the lean path
  // counts it from the headers, as grpc-go does.
  it.runIf(path === "lean")(
    "ends a call whose body arrives after its grpc-timeout with DEADLINE_EXCEEDED",
    async () => {
      const body = frame(toBinary(GetRequestSchema, create(GetRequestSchema, { key: "x" })));
      const res = await rawCall(
        server.baseUrl,
        "/latchkey.v1.KvService/Get",
        body,
        { "grpc-timeout": "50m" },
        { delayBodyMs: 300 },
      );
      expect(res.grpcStatus).toBe(Code.DeadlineExceeded);
    },
  );

  it("fails an already expired deadline with DEADLINE_EXCEEDED", async () => {
    const out = await unary(kv, "get", { key: "interop/a" }, { deadline: Date.now() - 1 });
    expect(out.status.code).toBe(grpc.status.DEADLINE_EXCEEDED);
  });

  it("releases a server stream's resources when the client cancels it", async () => {
    const call = health.watch({ service: "" }) as grpc.ClientReadableStream<{ status: string }>;
    const first = await new Promise<{ status: string }>((resolve) => call.once("data", resolve));
    expect(first.status).toBe("SERVING");
    expect(metricValue(await metrics(), "latchkey_health_watchers")).toBe(1);
    const ended = new Promise<grpc.ServiceError>((resolve) => call.on("error", resolve));
    call.cancel();
    expect((await ended).code).toBe(grpc.status.CANCELLED);
    await eventually(async () => metricValue(await metrics(), "latchkey_health_watchers") === 0);
    if (path === "lean") {
      expect(metricValue(await metrics(), "latchkey_grpc_lean_active_calls")).toBe(0);
    }
  });
});

describe.each([
  ["lean", true],
  ["connect", false],
])("grpc-js against hand-written handlers on the %s path", (_path, lean) => {
  let bare: Awaited<ReturnType<typeof startBareServer>>;
  let kv: GrpcClient;
  const aborted: unknown[] = [];

  const stream = { produced: 0, finished: false };

  beforeAll(async () => {
    bare = await startBareServer(
      [
        {
          service: WatchService,
          impl: {
            // 2000 messages of 32 KiB, as fast as the transport takes them.
            async *watch() {
              stream.produced = 0;
              stream.finished = false;
              const value = new Uint8Array(32 * 1024);
              try {
                for (let i = 0; i < 2000; i++) {
                  stream.produced++;
                  yield { events: [{ kv: { key: `k${i}`, value } }] };
                }
              } finally {
                stream.finished = true;
              }
            },
          },
        },
        {
          service: KvService,
          impl: {
            // Echoes request metadata into response headers and trailers.
            get(_req: unknown, ctx: HandlerContext) {
              ctx.responseHeader.set("x-echo", ctx.requestHeader.get("x-trace-id") ?? "none");
              ctx.responseHeader.set("x-echo-bin", ctx.requestHeader.get("x-blob-bin") ?? "");
              ctx.responseTrailer.set("x-served-by", "bare");
              return {};
            },
            // Never answers: waits for its signal (deadline or cancel).
            batchGet(_req: unknown, ctx: HandlerContext) {
              return new Promise((_, reject) => {
                ctx.signal.addEventListener("abort", () => {
                  aborted.push(ctx.signal.reason);
                  reject(ctx.signal.reason);
                });
              });
            },
            // An unexpected failure with internal text.
            range() {
              throw new Error("secret database password in this text");
            },
            put() {
              throw new ConnectError("nope", Code.FailedPrecondition);
            },
          },
        },
      ],
      { lean },
    );
    kv = grpcClient("latchkey.v1.KvService", bare.target);
  });
  afterAll(async () => {
    kv.close();
    await bare.close();
  });

  it("passes request metadata to the handler and sends response headers and trailers", async () => {
    const metadata = new grpc.Metadata();
    metadata.set("x-trace-id", "abc");
    metadata.set("x-blob-bin", Buffer.from([0, 1, 2]));
    const out = await unary(kv, "get", { key: "k" }, { metadata });
    expect(out.status.code).toBe(grpc.status.OK);
    expect(out.headers?.get("x-echo")).toEqual(["abc"]);
    expect(out.headers?.get("x-echo-bin")).toEqual([Buffer.from([0, 1, 2])]);
    expect(out.status.metadata.get("x-served-by")).toEqual(["bare"]);
  });

  it("aborts the handler's signal at the deadline and answers DEADLINE_EXCEEDED", async () => {
    const before = aborted.length;
    const out = await unary(kv, "batchGet", { keys: ["a"] }, { deadline: Date.now() + 100 });
    expect(out.status.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    await eventually(() => aborted.length > before);
  });

  it("respects backpressure on server streams and stops the handler on cancel", async () => {
    const watch = grpcClient("latchkey.v1.WatchService", bare.target);
    try {
      const call = watch.watch({ prefix: "" }) as grpc.ClientReadableStream<unknown>;
      call.on("error", () => {});
      await new Promise((r) => call.once("data", r));
      call.pause();
      await new Promise((r) => setTimeout(r, 300));
      // Flow-control windows and stream buffers hold a few MiB, not all 64 MiB.
      expect(stream.produced).toBeLessThan(1000);
      call.resume();
      let received = 1;
      call.on("data", () => {
        received++;
        if (received === 500) call.cancel();
      });
      await eventually(() => stream.finished);
      expect(stream.produced).toBeLessThan(2000);
    } finally {
      watch.close();
    }
  });

  it("never leaks the text of an unexpected error", async () => {
    const out = await unary(kv, "range", { prefix: "" });
    expect(out.status.code).toBe(lean ? grpc.status.INTERNAL : grpc.status.INTERNAL);
    expect(out.status.details).not.toMatch(/secret/);
  });
});

describe.each([
  ["lean", "true"],
  ["connect", "false"],
])("grpc-js receives large replies intact (%s path)", (_path, leanFlag) => {
  it("delivers a 900 KiB BatchGet reply byte for byte (the lean path writes header and message apart)", async () => {
    const server = await startLatchkey({ LATCHKEY_GRPC_LEAN: leanFlag });
    const kv = grpcClient("latchkey.v1.KvService", server.target);
    try {
      const values = [0, 1, 2].map((i) => randomBytes(300 * 1024 + i));
      for (const [i, value] of values.entries()) {
        const put = await unary(kv, "put", { key: `large/${i}`, value });
        expect(put.status.code).toBe(grpc.status.OK);
      }
      const got = await unary<{ kvs: { key: string; value: Buffer }[] }>(kv, "batchGet", {
        keys: ["large/0", "large/1", "large/2"],
      });
      expect(got.status.code).toBe(grpc.status.OK);
      expect(got.response?.kvs.map((kv) => kv.key)).toEqual(["large/0", "large/1", "large/2"]);
      for (const [i, value] of values.entries()) {
        expect(Buffer.compare(got.response!.kvs[i]!.value, value)).toBe(0);
      }
    } finally {
      kv.close();
      await server.close();
    }
  });
});
