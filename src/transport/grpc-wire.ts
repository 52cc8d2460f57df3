/**
 * The gRPC wire format the lean path needs (gRPC over HTTP/2, PROTOCOL-HTTP2.md):
 * timeouts, length-prefixed messages, status trailers with their
 * percent-encoded message and their google.rpc.Status details.
 */
import { create, toBinary } from "@bufbuild/protobuf";
import { anyPack } from "@bufbuild/protobuf/wkt";
import type { ConnectError } from "@connectrpc/connect";
import { StatusSchema } from "../gen/google/rpc/status_pb.js";

/** Encodings a request may use; the order is the one advertised in grpc-accept-encoding. */
export const ACCEPT_ENCODING = "identity,deflate,gzip";

/** Response headers of every lean gRPC response that has a body. */
export const RESPONSE_HEADERS: Readonly<Record<string, string | number>> = Object.freeze({
  ":status": 200,
  "content-type": "application/grpc",
  "grpc-accept-encoding": ACCEPT_ENCODING,
});

/** Trailers of a successful call: one shared object (http2 copies what it sends). */
export const OK_TRAILERS: Readonly<Record<string, string>> = Object.freeze({ "grpc-status": "0" });

const TIMEOUT_UNIT_MS: Readonly<Record<string, number>> = {
  H: 3_600_000,
  M: 60_000,
  S: 1000,
  m: 1,
  u: 0.001,
  n: 0.000_001,
};

/**
 * Parses a grpc-timeout value ("1S", "250m": at most 8 digits and a unit) to
 * milliseconds; undefined when absent, NaN when malformed.
 */
export function parseGrpcTimeout(value: string | string[] | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "string" || value.length < 2 || value.length > 9) return Number.NaN;
  const unit = TIMEOUT_UNIT_MS[value[value.length - 1]!];
  const digits = value.slice(0, -1);
  if (unit === undefined || !/^\d+$/.test(digits)) return Number.NaN;
  return Number(digits) * unit;
}

const PLAIN_MESSAGE = /^[\x20-\x24\x26-\x7e]*$/;

/**
 * Percent-encodes a grpc-message value as the gRPC spec asks: bytes of the
 * UTF-8 encoding outside printable ASCII, and '%' itself, become %XX.
 */
export function encodeGrpcMessage(text: string): string {
  if (PLAIN_MESSAGE.test(text)) return text;
  let out = "";
  for (const byte of Buffer.from(text, "utf8")) {
    out +=
      byte >= 0x20 && byte <= 0x7e && byte !== 0x25
        ? String.fromCharCode(byte)
        : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

/**
 * The trailers (or trailers-only headers) that report `error`: grpc-status,
 * grpc-message and, when the error has details, grpc-status-details-bin (a
 * google.rpc.Status, base64 without padding). The error's metadata go first,
 * so the protocol's own fields win.
 */
export function errorTrailers(error: ConnectError): Record<string, string | string[]> {
  const trailers: Record<string, string | string[]> = {};
  error.metadata.forEach((value, key) => {
    if (!isReservedHeader(key)) trailers[key] = value;
  });
  trailers["grpc-status"] = String(error.code);
  trailers["grpc-message"] = encodeGrpcMessage(error.rawMessage);
  if (error.details.length > 0) {
    const status = create(StatusSchema, {
      code: error.code,
      message: error.rawMessage,
      details: error.details.map((detail) =>
        "desc" in detail
          ? anyPack(detail.desc, create(detail.desc, detail.value))
          : { typeUrl: `type.googleapis.com/${detail.type}`, value: detail.value },
      ),
    });
    trailers["grpc-status-details-bin"] = Buffer.from(toBinary(StatusSchema, status))
      .toString("base64")
      .replace(/=+$/, "");
  }
  return trailers;
}

/** A trailers-only response: the HTTP/2 response headers carry the status. */
export function trailersOnly(error: ConnectError): Record<string, string | string[] | number> {
  return { ...RESPONSE_HEADERS, ...errorTrailers(error) };
}

/** Headers a handler may not set itself: HTTP/2 pseudo-headers and the protocol's own. */
export function isReservedHeader(name: string): boolean {
  return (
    name.startsWith(":") ||
    name === "content-type" ||
    name === "content-length" ||
    name === "connection" ||
    name === "transfer-encoding" ||
    name === "te" ||
    name === "keep-alive" ||
    name === "grpc-status" ||
    name === "grpc-message" ||
    name === "grpc-status-details-bin" ||
    name === "grpc-encoding" ||
    name === "grpc-accept-encoding"
  );
}

/** Adds a handler's metadata (a Headers object) to `target`, skipping reserved names. */
export function addMetadata(target: Record<string, string | string[] | number>, from: Headers) {
  from.forEach((value, key) => {
    if (isReservedHeader(key)) return;
    if (key === "set-cookie") {
      target[key] = from.getSetCookie();
      return;
    }
    target[key] = value;
  });
}

/** Writes the 5-byte gRPC message header (uncompressed, `length` bytes) at the start of `target`. */
function writePrefix(target: Buffer, length: number): void {
  target[0] = 0;
  target.writeUInt32BE(length, 1);
}

/** The 5-byte gRPC message header of an uncompressed message of `length` bytes. */
export function messagePrefix(length: number): Buffer {
  const prefix = Buffer.allocUnsafe(5);
  writePrefix(prefix, length);
  return prefix;
}

/** Prefixes a serialized message with the 5-byte gRPC message header (uncompressed). */
export function frameMessage(message: Uint8Array): Buffer {
  const frame = Buffer.allocUnsafe(5 + message.byteLength);
  writePrefix(frame, message.byteLength);
  frame.set(message, 5);
  return frame;
}
