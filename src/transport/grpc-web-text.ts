/**
 * gRPC-Web's text mode (application/grpc-web-text): the binary gRPC-Web
 * body, base64-encoded both ways. The official grpc-web JavaScript client
 * uses it by default, and needs it for server streams; Connect serves only
 * the binary mode, so text requests are decoded into binary ones before
 * Connect sees them and the answers encoded back.
 *
 * Request bodies may be several base64 pieces, each padded (clients encode
 * as they write); every response chunk is encoded on its own, padded, so a
 * stream's messages reach the client as they are produced (the client
 * decodes in 4-character groups, as the gRPC-Web protocol asks).
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { UniversalServerRequest, UniversalServerResponse } from "@connectrpc/connect/protocol";

const TEXT_TYPE = /^application\/grpc-web-text(\+proto)?(;.*)?$/i;

/** Whether `contentType` is gRPC-Web's text mode (only its proto codec exists). */
export function isGrpcWebText(contentType: string | null): boolean {
  return contentType !== null && TEXT_TYPE.test(contentType);
}

/** The binary gRPC-Web request that a text-mode request carries. */
export function binaryRequest(uReq: UniversalServerRequest): UniversalServerRequest {
  const header = new Headers(uReq.header);
  header.set("content-type", "application/grpc-web+proto");
  const body = uReq.body as AsyncIterable<Uint8Array>;
  return { ...uReq, header, body: decodeBase64(body) };
}

/** The text-mode answer to a text-mode request, from Connect's binary one. */
export function textResponse(uRes: UniversalServerResponse): UniversalServerResponse {
  const header = new Headers(uRes.header);
  if (header.get("content-type")?.startsWith("application/grpc-web")) {
    header.set("content-type", "application/grpc-web-text+proto");
  }
  header.delete("content-length");
  return uRes.body ? { ...uRes, header, body: encodeBase64(uRes.body) } : { ...uRes, header };
}

/** Base64 (either alphabet) with padding; anything else is not a text-mode body. */
const NOT_BASE64 = /[^A-Za-z0-9+/=_-]/;

async function* decodeBase64(body: AsyncIterable<Uint8Array>): AsyncIterable<Uint8Array> {
  let carry = "";
  for await (const chunk of body) {
    const text = carry + Buffer.from(chunk).toString("latin1").replace(/\s+/g, "");
    if (NOT_BASE64.test(text)) {
      throw new ConnectError("the grpc-web-text request body is not base64", Code.InvalidArgument);
    }
    // Whole 4-character groups only; a group with padding ends a piece.
    const whole = text.length - (text.length % 4);
    carry = text.slice(whole);
    if (whole > 0) yield decodeGroups(text.slice(0, whole));
  }
  if (carry.length > 0) yield decodeGroups(carry);
}

/** Decodes base64 that may be several padded pieces one after another. */
function decodeGroups(text: string): Buffer {
  const pieces = text.match(/[^=]*(?:=+|$)/g) ?? [];
  return Buffer.concat(pieces.filter((p) => p !== "").map((p) => Buffer.from(p, "base64")));
}

async function* encodeBase64(body: AsyncIterable<Uint8Array>): AsyncIterable<Uint8Array> {
  for await (const chunk of body) {
    yield Buffer.from(
      Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength).toString("base64"),
    );
  }
}
