/**
 * grpc.health.v1.Health and server reflection (v1, v1alpha) on the API
 * port: buf curl (reflection client) lists and calls methods, Connect
 * clients check every reflection request kind, health follows readiness and
 * the drain.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { create, fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  Health,
  HealthCheckResponse_ServingStatus as ServingStatus,
} from "../../src/gen/grpc/health/v1/health_pb.js";
import {
  ServerReflection as ReflectionV1,
  type ServerReflectionRequest,
  ServerReflectionRequestSchema,
  type ServerReflectionResponse,
} from "../../src/gen/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ReflectionV1alpha } from "../../src/gen/grpc/reflection/v1alpha/reflection_pb.js";
import { connectClients } from "../support/clients.js";
import { startRedis } from "../support/redis-server.js";
import { eventually, grpcClient, type RunningServer, startLatchkey } from "../support/transport.js";

const run = promisify(execFile);
const BUF = "node_modules/.bin/buf";

async function bufCurl(args: string[]): Promise<string> {
  const { stdout } = await run(
    BUF,
    ["curl", "--http2-prior-knowledge", "--protocol", "grpc", ...args],
    {
      timeout: 20_000,
    },
  );
  return stdout;
}

async function* once<T>(...items: T[]): AsyncIterable<T> {
  for (const item of items) yield item;
}

describe("health and reflection", () => {
  let server: RunningServer;
  let clients: ReturnType<typeof connectClients>;

  beforeAll(async () => {
    server = await startLatchkey();
    clients = connectClients(server.baseUrl, "grpc");
  });
  afterAll(async () => {
    clients.close();
    await server.close();
  });

  it("lists services and methods through reflection with buf curl (v1 and v1alpha)", async () => {
    const methods = await bufCurl(["--list-methods", server.baseUrl]);
    expect(methods).toContain("latchkey.v1.KvService/Put");
    expect(methods).toContain("grpc.health.v1.Health/Check");
    const services = await bufCurl([
      "--reflect-protocol",
      "grpc-v1alpha",
      "--list-services",
      server.baseUrl,
    ]);
    expect(services).toContain("latchkey.v1.KvService");
    expect(services).toContain("grpc.reflection.v1alpha.ServerReflection");
  });

  it("calls methods described by reflection with buf curl", async () => {
    const put = await bufCurl([
      "-d",
      JSON.stringify({ key: "reflect/a", value: Buffer.from("v").toString("base64") }),
      `${server.baseUrl}/latchkey.v1.KvService/Put`,
    ]);
    expect(JSON.parse(put).kv.key).toBe("reflect/a");
    const health = await bufCurl(["-d", "{}", `${server.baseUrl}/grpc.health.v1.Health/Check`]);
    expect(JSON.parse(health)).toEqual({ status: "SERVING" });
  });

  it.each([
    ["v1", ReflectionV1],
    ["v1alpha", ReflectionV1alpha],
  ])("answers every reflection request kind (%s)", async (_name, service) => {
    const client = createClient(service as typeof ReflectionV1, clients.transport);
    const req = (messageRequest: ServerReflectionRequest["messageRequest"]) =>
      create(ServerReflectionRequestSchema, { host: "h", messageRequest });
    const responses: ServerReflectionResponse[] = [];
    for await (const res of client.serverReflectionInfo(
      once(
        req({ case: "listServices", value: "" }),
        req({ case: "fileContainingSymbol", value: "latchkey.v1.KvService.Put" }),
        req({ case: "fileByFilename", value: "latchkey/v1/kv.proto" }),
        req({ case: "fileContainingSymbol", value: "latchkey.v1.PutRequest" }),
        req({ case: "fileContainingSymbol", value: "no.such.Symbol" }),
        req({
          case: "fileContainingExtension",
          value: { containingType: "latchkey.v1.PutRequest", extensionNumber: 100 } as never,
        }),
        req({ case: "allExtensionNumbersOfType", value: "latchkey.v1.PutRequest" }),
        req({ case: "allExtensionNumbersOfType", value: "no.Such" }),
        req({ case: "fileContainingSymbol", value: "google.rpc.ErrorInfo" }),
      ),
    )) {
      responses.push(res as ServerReflectionResponse);
    }
    expect(responses).toHaveLength(9);
    const [list, bySymbol, byName, again, missing, extension, numbers, noType, errorInfo] =
      responses;

    expect(list!.validHost).toBe("h");
    const names =
      list!.messageResponse.case === "listServicesResponse"
        ? list!.messageResponse.value.service.map((s) => s.name)
        : [];
    expect(names).toEqual(
      expect.arrayContaining(["latchkey.v1.KvService", "grpc.health.v1.Health"]),
    );

    // The file and its dependencies, each once per stream.
    const files = (r: ServerReflectionResponse) =>
      r.messageResponse.case === "fileDescriptorResponse"
        ? r.messageResponse.value.fileDescriptorProto.map(
            (b) => fromBinary(FileDescriptorProtoSchema, b).name,
          )
        : [];
    expect(files(bySymbol!)[0]).toBe("latchkey/v1/kv.proto");
    expect(files(bySymbol!)).toEqual(
      expect.arrayContaining(["google/protobuf/duration.proto", "latchkey/v1/common.proto"]),
    );
    expect(files(byName!)).toEqual(["latchkey/v1/kv.proto"]);
    // The error details every error carries are described too (grpcurl decodes them).
    expect(files(errorInfo!)[0]).toBe("google/rpc/error_details.proto");
    expect(files(again!)).toEqual(["latchkey/v1/kv.proto"]);
    const kvFile =
      bySymbol!.messageResponse.case === "fileDescriptorResponse"
        ? fromBinary(
            FileDescriptorProtoSchema,
            bySymbol!.messageResponse.value.fileDescriptorProto[0]!,
          )
        : undefined;
    expect(kvFile?.service.map((s) => s.name)).toContain("KvService");

    for (const notFound of [missing!, extension!, noType!]) {
      expect(notFound.messageResponse.case).toBe("errorResponse");
      if (notFound.messageResponse.case === "errorResponse") {
        expect(notFound.messageResponse.value.errorCode).toBe(Code.NotFound);
      }
    }
    expect(numbers!.messageResponse.case).toBe("allExtensionNumbersResponse");
  });

  it("checks and lists health: the empty name and each served service", async () => {
    const health = createClient(Health, clients.transport);
    expect((await health.check({ service: "" })).status).toBe(ServingStatus.SERVING);
    expect((await health.check({ service: "latchkey.v1.KvService" })).status).toBe(
      ServingStatus.SERVING,
    );
    const error = await health
      .check({ service: "nope" })
      .catch((e: unknown) => ConnectError.from(e));
    expect((error as ConnectError).code).toBe(Code.NotFound);
    const list = await health.list({});
    expect(list.statuses[""]?.status).toBe(ServingStatus.SERVING);
    expect(list.statuses["latchkey.v1.KvService"]?.status).toBe(ServingStatus.SERVING);
  });

  it("answers Watch for an unknown service with SERVICE_UNKNOWN (grpc-js, lean path)", async () => {
    const client = grpcClient("grpc.health.v1.Health", server.target);
    try {
      const call = client.watch({ service: "nope" }) as grpc.ClientReadableStream<{
        status: string;
      }>;
      const first = await new Promise<{ status: string }>((resolve) => call.once("data", resolve));
      expect(first.status).toBe("SERVICE_UNKNOWN");
      call.on("error", () => {});
      call.cancel();
    } finally {
      client.close();
    }
  });
});

describe("health follows the backend and the drain", () => {
  it("goes NOT_SERVING when Redis dies, and on drain", async () => {
    const redis = await startRedis();
    const server = await startLatchkey({
      LATCHKEY_REDIS_URL: redis.url,
      LATCHKEY_READINESS_POLL_MS: "50",
      LATCHKEY_SHUTDOWN_GRACE_MS: "300",
    });
    const client = grpcClient("grpc.health.v1.Health", server.target);
    try {
      const call = client.watch({ service: "" }) as grpc.ClientReadableStream<{ status: string }>;
      const seen: string[] = [];
      call.on("data", (m: { status: string }) => seen.push(m.status));
      call.on("error", () => {});
      await eventually(() => seen.includes("SERVING"));
      await redis.kill();
      await eventually(() => seen.at(-1) === "NOT_SERVING", 5000);
    } finally {
      client.close();
      await server.close();
      await redis.stop();
    }
  });

  it("pushes NOT_SERVING to watchers when the drain starts", async () => {
    const server = await startLatchkey({ LATCHKEY_SHUTDOWN_GRACE_MS: "300" });
    const client = grpcClient("grpc.health.v1.Health", server.target);
    try {
      const call = client.watch({ service: "" }) as grpc.ClientReadableStream<{ status: string }>;
      const seen: string[] = [];
      call.on("data", (m: { status: string }) => seen.push(m.status));
      const ended = new Promise<grpc.StatusObject>((resolve) => call.on("status", resolve));
      call.on("error", () => {});
      await eventually(() => seen.includes("SERVING"));
      const closing = server.close();
      await eventually(() => seen.at(-1) === "NOT_SERVING");
      // After the grace period the stream ends with UNAVAILABLE.
      expect((await ended).code).toBe(grpc.status.UNAVAILABLE);
      await closing;
    } finally {
      client.close();
    }
  });
});
