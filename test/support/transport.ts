/**
 * Helpers for the transport tests: a Latchkey server with its admin port,
 * a bare listener over hand-written service implementations, grpc-js
 * clients over proto/, raw HTTP/2 gRPC calls, and status-details decoding.
 */
import http2 from "node:http2";
import type { DescService } from "@bufbuild/protobuf";
import { fromBinary } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { pino } from "pino";
import { Registry } from "prom-client";
import { registerRoutes, type ServedService } from "../../src/api/routes.js";
import { type Config, loadConfig } from "../../src/config.js";
import { type ErrorInfo, ErrorInfoSchema } from "../../src/gen/google/rpc/error_details_pb.js";
import { StatusSchema } from "../../src/gen/google/rpc/status_pb.js";
import { createServer } from "../../src/server.js";
import { createLeanGrpc, type LeanGrpc } from "../../src/transport/grpc-lean.js";
import { createApiListener, type RequestHandler } from "../../src/transport/listener.js";
import { freePort } from "./redis-server.js";

export interface RunningServer {
  readonly port: number;
  readonly adminPort: number | undefined;
  readonly baseUrl: string;
  readonly target: string;
  readonly config: Config;
  close(): Promise<void>;
}

/** A real Latchkey server on the memory backend, on free ports (admin port included). */
export async function startLatchkey(
  env: Record<string, string> = {},
  options: { admin?: boolean } = {},
): Promise<RunningServer> {
  const config = loadConfig(
    {
      LATCHKEY_HOST: "127.0.0.1",
      LATCHKEY_PORT: "0",
      // Admin port 0 means "off": take a free one when the test wants it.
      LATCHKEY_ADMIN_PORT: options.admin ? String(await freePort()) : "0",
      LATCHKEY_LOG_LEVEL: process.env.LATCHKEY_TEST_LOG_LEVEL ?? "silent",
      LATCHKEY_SHUTDOWN_GRACE_MS: "200",
      ...env,
    },
    [],
  );
  const server = createServer(config, pino({ level: config.logLevel }));
  const { port, adminPort } = await server.start();
  return {
    port,
    adminPort,
    baseUrl: `http://127.0.0.1:${port}`,
    target: `127.0.0.1:${port}`,
    config,
    close: () => server.close(),
  };
}

/** A listener (lean path on or off) over hand-written implementations, for behaviour the real services cannot show. */
export async function startBareServer(
  services: { service: DescService; impl: Record<string, unknown> }[],
  options: { lean: boolean; maxMessageBytes?: number; env?: Record<string, string> },
): Promise<{ port: number; target: string; lean: LeanGrpc | undefined; close(): Promise<void> }> {
  const config = loadConfig({ LATCHKEY_LOG_LEVEL: "silent", ...options.env }, []);
  const logger = pino({ level: "silent" });
  const served = services as unknown as ServedService[];
  const shutdown = new AbortController();
  const handler = connectNodeAdapter({
    routes: (router) => registerRoutes(router, served),
    readMaxBytes: options.maxMessageBytes ?? config.server.maxRequestBytes,
    writeMaxBytes: options.maxMessageBytes ?? config.server.maxRequestBytes,
    shutdownSignal: shutdown.signal,
  });
  const lean = options.lean
    ? createLeanGrpc({
        services: served,
        maxMessageBytes: options.maxMessageBytes ?? config.server.maxRequestBytes,
        maxDeadlineMs: config.server.maxDeadlineMs,
        logger,
        registry: new Registry(),
      })
    : undefined;
  const listener = createApiListener({
    settings: config.server,
    tls: undefined,
    logger,
    handler: handler as RequestHandler,
    lean,
  });
  const port = await listener.listen(0, "127.0.0.1");
  return {
    port,
    target: `127.0.0.1:${port}`,
    lean,
    close: () =>
      listener.drain(50, () => {
        shutdown.abort();
        lean?.abortAll(new ConnectError("server closed", Code.Unavailable));
      }),
  };
}

// --- grpc-js -----------------------------------------------------------------

const PROTO_FILES = [
  "latchkey/v1/kv.proto",
  "latchkey/v1/watch.proto",
  "grpc/health/v1/health.proto",
];

let packageCache: grpc.GrpcObject | undefined;

/** The grpc-js package object for proto/ (Latchkey, health). */
export function grpcPackage(): grpc.GrpcObject {
  packageCache ??= grpc.loadPackageDefinition(
    protoLoader.loadSync(PROTO_FILES, {
      includeDirs: ["proto"],
      longs: String,
      enums: String,
      defaults: true,
      oneofs: true,
    }),
  );
  return packageCache;
}

type ClientConstructor = new (
  target: string,
  credentials: grpc.ChannelCredentials,
  options?: grpc.ChannelOptions,
) => grpc.Client;

type Method = (...args: unknown[]) => unknown;
/** The methods the tests call on grpc-js clients (proto-loader's lowerCamelCase names). */
type MethodName =
  | "get"
  | "put"
  | "batchGet"
  | "range"
  | "delete"
  | "watch"
  | "check"
  | "list"
  | "acquire";
export type GrpcClient = grpc.Client & Record<MethodName, Method>;

/** A grpc-js client of `service` ("latchkey.v1.KvService", "grpc.health.v1.Health"). */
export function grpcClient(
  service: string,
  target: string,
  options: grpc.ChannelOptions = {},
  credentials: grpc.ChannelCredentials = grpc.credentials.createInsecure(),
): GrpcClient {
  let node: unknown = grpcPackage();
  for (const part of service.split(".")) node = (node as Record<string, unknown>)[part];
  const Ctor = node as ClientConstructor;
  return new Ctor(target, credentials, options) as GrpcClient;
}

export interface UnaryOutcome<T = Record<string, unknown>> {
  readonly response?: T;
  readonly error?: grpc.ServiceError;
  readonly headers?: grpc.Metadata;
  readonly status: grpc.StatusObject;
}

/** Calls a unary method with grpc-js and collects response, headers and status. */
export function unary<T = Record<string, unknown>>(
  client: GrpcClient,
  method: MethodName,
  request: unknown,
  options: { metadata?: grpc.Metadata; deadline?: grpc.Deadline } = {},
): Promise<UnaryOutcome<T>> {
  return new Promise((resolve) => {
    let headers: grpc.Metadata | undefined;
    let response: T | undefined;
    let error: grpc.ServiceError | undefined;
    const call = client[method](
      request,
      options.metadata ?? new grpc.Metadata(),
      options.deadline === undefined ? {} : { deadline: options.deadline },
      (err: grpc.ServiceError | null, res: T) => {
        if (err) error = err;
        else response = res;
      },
    ) as grpc.ClientUnaryCall;
    call.on("metadata", (m: grpc.Metadata) => {
      headers = m;
    });
    call.on("status", (status: grpc.StatusObject) => {
      // The callback runs before 'status'.
      setImmediate(() =>
        resolve({
          status,
          ...(response !== undefined ? { response } : {}),
          ...(error !== undefined ? { error } : {}),
          ...(headers !== undefined ? { headers } : {}),
        }),
      );
    });
  });
}

// --- raw HTTP/2 ---------------------------------------------------------------

/** A gRPC message frame (5-byte prefix). */
export function frame(message: Uint8Array, compressed = false): Buffer {
  const out = Buffer.alloc(5 + message.byteLength);
  out[0] = compressed ? 1 : 0;
  out.writeUInt32BE(message.byteLength, 1);
  out.set(message, 5);
  return out;
}

/** The envelopes (gRPC, gRPC-Web and Connect stream framing) of a response body. */
export function envelopes(body: Buffer): { flags: number; payload: Buffer }[] {
  const out: { flags: number; payload: Buffer }[] = [];
  for (let at = 0; at + 5 <= body.length; ) {
    const length = body.readUInt32BE(at + 1);
    out.push({ flags: body[at]!, payload: body.subarray(at + 5, at + 5 + length) });
    at += 5 + length;
  }
  return out;
}

/** The fields of a gRPC-Web trailer frame's payload ("name: value" lines). */
export function trailerFields(payload: Buffer): http2.IncomingHttpHeaders {
  const fields: http2.IncomingHttpHeaders = {};
  for (const line of payload.toString("utf8").split("\r\n")) {
    const colon = line.indexOf(":");
    if (colon > 0) fields[line.slice(0, colon).trim()] = line.slice(colon + 1).trim();
  }
  return fields;
}

export interface RawResponse {
  readonly headers: http2.IncomingHttpHeaders;
  readonly trailers: http2.IncomingHttpHeaders | undefined;
  readonly data: Buffer;
  /** grpc-status from the trailers, or from the headers for a trailers-only response. */
  readonly grpcStatus: number | undefined;
  readonly grpcMessage: string | undefined;
}

/**
 * One HTTP/2 request with a raw body. `delayBodyMs` sends the headers first
 * and the body that much later.
 */
export async function rawCall(
  baseUrl: string,
  path: string,
  body: Buffer | undefined,
  headers: http2.OutgoingHttpHeaders = {},
  options: { delayBodyMs?: number; session?: http2.ClientHttp2Session; endStream?: boolean } = {},
): Promise<RawResponse> {
  const session = options.session ?? http2.connect(baseUrl);
  session.on("error", () => {});
  try {
    return await new Promise<RawResponse>((resolve, reject) => {
      const req = session.request({
        ":method": "POST",
        ":path": path,
        "content-type": "application/grpc",
        te: "trailers",
        ...headers,
      });
      let responseHeaders: http2.IncomingHttpHeaders = {};
      let trailers: http2.IncomingHttpHeaders | undefined;
      const chunks: Buffer[] = [];
      req.on("response", (h) => {
        responseHeaders = h;
      });
      req.on("trailers", (t) => {
        trailers = t;
      });
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("error", reject);
      req.on("close", () => {
        const status = (trailers ?? responseHeaders)["grpc-status"];
        const message = (trailers ?? responseHeaders)["grpc-message"];
        resolve({
          headers: responseHeaders,
          trailers,
          data: Buffer.concat(chunks),
          grpcStatus: status === undefined ? undefined : Number(status),
          grpcMessage: message === undefined ? undefined : decodeURIComponent(String(message)),
        });
      });
      const send = () => {
        if (options.endStream === false) {
          if (body) req.write(body);
        } else {
          req.end(body);
        }
      };
      if (options.delayBodyMs) setTimeout(send, options.delayBodyMs);
      else send();
    });
  } finally {
    if (!options.session) session.close();
  }
}

// --- status details -------------------------------------------------------------

export interface DecodedStatus {
  readonly code: number;
  readonly message: string;
  readonly infos: ErrorInfo[];
}

/** Decodes grpc-status-details-bin (base64 text or the bytes grpc-js gives). */
export function decodeStatusDetails(value: string | Buffer | Uint8Array): DecodedStatus {
  const bytes = typeof value === "string" ? Buffer.from(value, "base64") : value;
  const status = fromBinary(StatusSchema, bytes);
  const infos: ErrorInfo[] = [];
  for (const any of status.details) {
    const info = anyUnpack(any, ErrorInfoSchema);
    if (info) infos.push(info);
  }
  return { code: status.code, message: status.message, infos };
}

/** Reads one metric's value (first sample matching `labels`) from a Prometheus text page. */
export function metricValue(
  text: string,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  for (const line of text.split("\n")) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== " " && rest[0] !== "{") continue;
    if (Object.entries(labels).every(([k, v]) => rest.includes(`${k}="${v}"`))) {
      return Number(rest.slice(rest.lastIndexOf(" ") + 1));
    }
  }
  return undefined;
}

/** Polls `check` until it returns true or `timeoutMs` passes. */
export async function eventually(
  check: () => boolean | Promise<boolean>,
  timeoutMs = 3000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 20));
  }
}
