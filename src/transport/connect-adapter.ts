/**
 * The Node request handler for everything the lean gRPC path does not take
 * (Connect, gRPC-Web, gRPC streaming with a client stream): connect-node's
 * adapter, plus one repair. Errors that Connect raises itself, before any
 * handler runs (a body that does not decode, an unknown field value), carry
 * no ErrorInfo detail, and a binary body that does not decode comes back
 * INTERNAL. Clients must get INVALID_ARGUMENT with a reason for bad input,
 * so those answers are rewritten here: Connect unary error bodies, gRPC
 * status trailers, and the last envelope of Connect and gRPC-Web streams get
 * the same ErrorInfo as every other error. It also bounds the deadlines
 * requests bring before Connect arms timers with them.
 */

import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { create, type DescMessage, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, type ConnectRouter, createConnectRouter } from "@connectrpc/connect";
import type { UniversalServerResponse } from "@connectrpc/connect/protocol";
import {
  compressionBrotli,
  compressionGzip,
  universalRequestFromNodeRequest,
  universalResponseToNodeResponse,
} from "@connectrpc/connect-node";
import type { Logger } from "pino";
import { errorWithInfo, isDecodeFailure } from "../api/errors.js";
import { MAX_TIMER_MS } from "../config.js";
import { Reason } from "../core/errors.js";
import { binaryRequest, isGrpcWebText, textResponse } from "./grpc-web-text.js";
import { errorTrailers, parseGrpcTimeout } from "./grpc-wire.js";

type NodeRequest = IncomingMessage | Http2ServerRequest;
type NodeResponse = ServerResponse | Http2ServerResponse;

export interface ConnectHandlerOptions {
  readonly routes: (router: ConnectRouter) => void;
  readonly maxMessageBytes: number;
  /** Aborted when the drain's grace period ends. */
  readonly shutdownSignal: AbortSignal;
  /** Unary deadlines longer than this are cut to it (as on the lean path). */
  readonly maxDeadlineMs: number;
  readonly logger: Logger;
}

/** Connect's error code names (the Connect protocol's JSON `code`) to codes. */
const CODE_BY_NAME = new Map<string, Code>(
  Object.entries(Code)
    .filter(([, v]) => typeof v === "number")
    .map(([name, code]) => [
      name.replace(/[A-Z]/g, (c, i) => (i > 0 ? "_" : "") + c.toLowerCase()),
      code as Code,
    ]),
);
CODE_BY_NAME.set("canceled", Code.Canceled);

const REASON_BY_CODE: Partial<Record<Code, string>> = {
  [Code.InvalidArgument]: Reason.INVALID_ARGUMENT,
  [Code.ResourceExhausted]: Reason.TOO_LARGE,
  [Code.DeadlineExceeded]: Reason.DEADLINE_EXCEEDED,
  [Code.Canceled]: Reason.CANCELLED,
  [Code.Unimplemented]: "UNIMPLEMENTED",
  [Code.Unavailable]: Reason.SHUTTING_DOWN,
  [Code.Internal]: Reason.INTERNAL,
};

export function createConnectHandler(
  options: ConnectHandlerOptions,
): (req: NodeRequest, res: NodeResponse) => void {
  const router = createConnectRouter({
    readMaxBytes: options.maxMessageBytes,
    writeMaxBytes: options.maxMessageBytes,
    shutdownSignal: options.shutdownSignal,
    acceptCompression: [compressionGzip, compressionBrotli],
    // Strict JSON: an unknown field or enum name (a typo such as "EQUALS") is
    // INVALID_ARGUMENT instead of silently becoming the default value.
    jsonOptions: { ignoreUnknownFields: false },
  });
  options.routes(router);
  const handlers = new Map(router.handlers.map((h) => [h.requestPath, h]));

  return (req, res) => {
    const handler = handlers.get(req.url?.split("?", 2)[0] ?? "");
    if (!handler) {
      res.writeHead(404);
      res.end();
      return;
    }
    let uReq = universalRequestFromNodeRequest(req, res, undefined, undefined);
    boundDeadline(uReq.header, handler.method.methodKind === "unary", options.maxDeadlineMs);
    const text = isGrpcWebText(uReq.header.get("content-type"));
    if (text) uReq = binaryRequest(uReq);
    handler(uReq)
      .then((uRes) => repair(uRes, handler.method.input))
      .then((uRes) => withAllow(uRes))
      .then((uRes) => universalResponseToNodeResponse(text ? textResponse(uRes) : uRes, res))
      .catch((reason: unknown) => {
        if (ConnectError.from(reason).code === Code.Aborted) return;
        options.logger.warn(
          { err: reason, rpc: `${handler.service.typeName}/${handler.method.name}` },
          "connect handler failed",
        );
      });
  };
}

/**
 * Bounds the deadline a request brings (connect-timeout-ms, or grpc-timeout
 * for gRPC and gRPC-Web) before Connect arms a timer with it (a Node timer
 * longer than MAX_TIMER_MS fires at once): unary calls
 * get at most `maxDeadlineMs`, as on the lean path; a stream's deadline too
 * long for a Node timer (about 24.8 days) is dropped, and the client's own
 * deadline ends it. Malformed values are left for Connect to refuse.
 */
function boundDeadline(header: Headers, unary: boolean, maxDeadlineMs: number): void {
  const limit = unary ? maxDeadlineMs : MAX_TIMER_MS;
  const connect = header.get("connect-timeout-ms");
  if (connect !== null && /^\d+$/.test(connect) && Number(connect) > limit) {
    if (unary) header.set("connect-timeout-ms", String(limit));
    else header.delete("connect-timeout-ms");
  }
  const grpc = header.get("grpc-timeout");
  const grpcMs = grpc === null ? undefined : parseGrpcTimeout(grpc);
  if (grpcMs !== undefined && grpcMs > limit) {
    // At most 8 digits (the gRPC spec): milliseconds, or whole seconds beyond.
    if (unary)
      header.set("grpc-timeout", limit < 1e8 ? `${limit}m` : `${Math.floor(limit / 1000)}S`);
    else header.delete("grpc-timeout");
  }
}

/** A 405 names the methods the path accepts (RFC 9110), which Connect leaves out. */
function withAllow(uRes: UniversalServerResponse): UniversalServerResponse {
  if (uRes.status === 405 && !uRes.header?.has("allow")) {
    const header = new Headers(uRes.header);
    header.set("allow", "POST");
    return { ...uRes, header };
  }
  return uRes;
}

/** Enveloped bodies: Connect streams and gRPC-Web (unary or streaming). */
const STREAMED_BODY = /^application\/(connect\+|grpc-web)/;

/** Gives Connect's own errors an ErrorInfo and the right code. */
async function repair(
  uRes: UniversalServerResponse,
  input: DescMessage,
): Promise<UniversalServerResponse> {
  const contentType = uRes.header?.get("content-type") ?? "";
  if (uRes.status >= 400 && contentType.startsWith("application/json")) {
    return repairConnectUnary(uRes, input);
  }
  const streamed = STREAMED_BODY.exec(contentType);
  if (streamed && uRes.body) {
    // Connect set the length of the body it wrote; a repaired end may be longer.
    uRes.header?.delete("content-length");
    return { ...uRes, body: repairStreamEnd(uRes.body, streamed[1] === "grpc-web", input) };
  }
  for (const headers of [uRes.trailer, uRes.header]) {
    const status = headers?.get("grpc-status");
    if (
      headers &&
      status !== null &&
      status !== undefined &&
      status !== "0" &&
      !headers.has("grpc-status-details-bin")
    ) {
      repairGrpcTrailers(headers, Number(status), input);
    }
  }
  return uRes;
}

interface Explained {
  readonly code: Code;
  readonly message: string;
  readonly metadata: Record<string, string>;
}

const JSON_FIELD_ERROR = /^cannot decode field [\w.]+\.(\w+) from JSON: (.+)$/s;
const JSON_UNKNOWN_KEY = /^cannot decode message [\w.]+ from JSON: key "(.*)" is unknown$/s;
/** A value of an enum or of a well-known type (Duration, Timestamp) that does not parse. */
const JSON_BAD_VALUE =
  /^cannot decode (?:enum ([\w.]+)|message (google\.protobuf\.\w+)) from JSON: (.+)$/s;
const OVER_LIMIT = /larger than configured (read|write)MaxBytes (\d+)/;

/**
 * What a client is told about an error Connect raised itself: a request
 * that does not decode is INVALID_ARGUMENT naming the field at fault (JSON
 * syntax errors and binary parse errors get a fixed text: the parser's own
 * words describe its internals, not the request); a message over the size
 * limit names the limit.
 */
function explain(code: Code, message: string, input: DescMessage): Explained {
  if (isDecodeFailure(code, message)) {
    const field = JSON_FIELD_ERROR.exec(message);
    if (field) {
      return {
        code: Code.InvalidArgument,
        message: `field ${field[1]}: ${field[2]}`,
        metadata: { field: field[1]! },
      };
    }
    const unknown = JSON_UNKNOWN_KEY.exec(message);
    if (unknown) {
      return {
        code: Code.InvalidArgument,
        message: `unknown field "${unknown[1]}" for ${input.typeName}`,
        metadata: { field: unknown[1]! },
      };
    }
    const badValue = JSON_BAD_VALUE.exec(message);
    if (badValue) {
      return {
        code: Code.InvalidArgument,
        message: `invalid ${badValue[1] ?? badValue[2]} value: ${badValue[3]}`,
        metadata: {},
      };
    }
    const format = message.startsWith("parse binary") ? "binary" : "JSON";
    return {
      code: Code.InvalidArgument,
      message: `the request is not a valid ${input.typeName} message (${format})`,
      metadata: {},
    };
  }
  const over = code === Code.ResourceExhausted ? OVER_LIMIT.exec(message) : null;
  if (over) {
    const which = over[1] === "read" ? "request" : "response";
    return {
      code,
      message: `the ${which} message is larger than the limit of ${over[2]} bytes`,
      metadata: { limit: over[2]! },
    };
  }
  return { code, message, metadata: {} };
}

async function repairConnectUnary(
  uRes: UniversalServerResponse,
  input: DescMessage,
): Promise<UniversalServerResponse> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of uRes.body ?? []) chunks.push(chunk);
  const original = Buffer.concat(chunks);
  let parsed: { code?: string; message?: string; details?: unknown[] };
  try {
    parsed = JSON.parse(original.toString("utf8"));
  } catch {
    return { ...uRes, body: once(original) };
  }
  if (parsed.details && parsed.details.length > 0) return { ...uRes, body: once(original) };
  const connectCode = CODE_BY_NAME.get(parsed.code ?? "") ?? Code.Unknown;
  const error = connectErrorJson(connectCode, parsed.message ?? "", input);
  const status = error.code === codeName(connectCode) ? uRes.status : 400;
  const body = Buffer.from(JSON.stringify(error));
  // Connect set the length of the body it wrote; this one is longer.
  if (uRes.header?.has("content-length")) uRes.header.set("content-length", String(body.length));
  return { ...uRes, status, body: once(body) };
}

/** A Connect error (unary body or end-stream `error`) with its ErrorInfo, explained. */
function connectErrorJson(
  connectCode: Code,
  connectMessage: string,
  input: DescMessage,
): { code: string; message: string; details: { type: string; value: string }[] } {
  const { code, message, metadata } = explain(connectCode, connectMessage, input);
  const error = errorWithInfo(code, REASON_BY_CODE[code] ?? Reason.INTERNAL, message, metadata);
  const details = error.details.map((d) => {
    const { desc, value } = d as { desc: DescMessage; value: MessageInitShape<DescMessage> };
    return { type: desc.typeName, value: base64(toBinary(desc, create(desc, value))) };
  });
  return { code: codeName(code), message, details };
}

/** gRPC status trailers with an ErrorInfo, explained, for a status Connect set without one. */
function explainedTrailers(
  status: number,
  grpcMessage: string,
  input: DescMessage,
): Record<string, string | string[]> {
  const { code, message, metadata } = explain(status as Code, grpcMessage, input);
  return errorTrailers(
    errorWithInfo(code, REASON_BY_CODE[code] ?? Reason.INTERNAL, message, metadata),
  );
}

function repairGrpcTrailers(headers: Headers, status: number, input: DescMessage): void {
  const message = decodeURIComponent(headers.get("grpc-message") ?? "");
  for (const [name, value] of Object.entries(explainedTrailers(status, message, input)))
    headers.set(name, String(value));
}

/** Envelope flags: Connect's end-stream message, gRPC-Web's trailers, compression. */
const END_STREAM = 0b10;
const GRPC_WEB_TRAILERS = 0x80;
const COMPRESSED = 0b1;

/**
 * A server stream's body with its final envelope repaired: Connect's
 * end-stream message (JSON `error`) or gRPC-Web's trailer frame gets an
 * ErrorInfo, explained, when Connect ended the stream with an error of its
 * own (a request that does not decode). Message envelopes pass through as
 * they arrive.
 */
async function* repairStreamEnd(
  body: AsyncIterable<Uint8Array>,
  grpcWeb: boolean,
  input: DescMessage,
): AsyncIterable<Uint8Array> {
  let pending: Buffer = Buffer.alloc(0);
  for await (const chunk of body) {
    const bytes = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    pending = pending.length === 0 ? bytes : Buffer.concat([pending, bytes]);
    let at = 0;
    while (pending.length - at >= 5) {
      const length = pending.readUInt32BE(at + 1);
      if (pending.length - at < 5 + length) break;
      const flags = pending[at]!;
      const envelope = pending.subarray(at, at + 5 + length);
      at += 5 + length;
      const last = grpcWeb ? flags & GRPC_WEB_TRAILERS : flags & END_STREAM;
      yield last && !(flags & COMPRESSED)
        ? repairedEnd(flags, envelope.subarray(5), grpcWeb, input)
        : envelope;
    }
    pending = pending.subarray(at);
  }
  if (pending.length > 0) yield pending;
}

function repairedEnd(
  flags: number,
  payload: Uint8Array,
  grpcWeb: boolean,
  input: DescMessage,
): Uint8Array {
  const text = Buffer.from(payload).toString("utf8");
  let repaired: string | undefined;
  if (grpcWeb) {
    const fields = new Map<string, string>();
    for (const line of text.split("\r\n")) {
      const colon = line.indexOf(":");
      if (colon > 0)
        fields.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
    }
    const status = fields.get("grpc-status");
    if (status !== undefined && status !== "0" && !fields.has("grpc-status-details-bin")) {
      const message = decodeURIComponent(fields.get("grpc-message") ?? "");
      for (const [name, value] of Object.entries(explainedTrailers(Number(status), message, input)))
        fields.set(name, String(value));
      repaired = [...fields].map(([name, value]) => `${name}: ${value}\r\n`).join("");
    }
  } else {
    try {
      const end = JSON.parse(text) as {
        error?: { code?: string; message?: string; details?: unknown[] };
      };
      if (end.error && !(end.error.details && end.error.details.length > 0)) {
        const code = CODE_BY_NAME.get(end.error.code ?? "") ?? Code.Unknown;
        end.error = connectErrorJson(code, end.error.message ?? "", input);
        repaired = JSON.stringify(end);
      }
    } catch {
      // Not JSON: pass it on as it is.
    }
  }
  if (repaired === undefined)
    return Buffer.concat([envelopeHeader(flags, payload.length), payload]);
  const bytes = Buffer.from(repaired, "utf8");
  return Buffer.concat([envelopeHeader(flags, bytes.length), bytes]);
}

function envelopeHeader(flags: number, length: number): Buffer {
  const header = Buffer.alloc(5);
  header[0] = flags;
  header.writeUInt32BE(length, 1);
  return header;
}

function codeName(code: Code): string {
  for (const [name, value] of CODE_BY_NAME) if (value === code) return name;
  return "unknown";
}

function base64(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("base64").replace(/=+$/, "");
}

async function* once(bytes: Uint8Array): AsyncIterable<Uint8Array> {
  yield bytes;
}
