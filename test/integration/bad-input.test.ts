/**
 * Bodies that do not decode, on every protocol: always INVALID_ARGUMENT with
 * an ErrorInfo reason, never INTERNAL, never parser internals.
 */
import http2 from "node:http2";
import { fromBinary } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorInfoSchema } from "../../src/gen/google/rpc/error_details_pb.js";
import { StatusSchema } from "../../src/gen/google/rpc/status_pb.js";
import { startTestServer, type TestServer } from "../support/test-server.js";
import { envelopes, frame, trailerFields } from "../support/transport.js";

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({ backend: "memory" });
});
afterAll(async () => {
  await server.close();
});

async function connectUnary(path: string, contentType: string, body: Uint8Array | string) {
  const res = await fetch(`${server.baseUrl}${path}`, {
    method: "POST",
    headers: { "content-type": contentType },
    body,
  });
  return {
    status: res.status,
    json: (await res.json()) as {
      code: string;
      message: string;
      details?: { type: string; value: string }[];
    },
  };
}

function infoOf(details: { type: string; value: string }[] | undefined) {
  const info = details?.find((d) => d.type === "google.rpc.ErrorInfo");
  return info && fromBinary(ErrorInfoSchema, Buffer.from(info.value, "base64"));
}

function reasonOf(details: { type: string; value: string }[] | undefined): string | undefined {
  return infoOf(details)?.reason;
}

/** A raw HTTP/2 call with the given content type; returns status, headers and trailers. */
function rawH2(
  path: string,
  contentType: string,
  body: Uint8Array,
  extraHeaders: http2.OutgoingHttpHeaders = {},
) {
  return new Promise<{
    headers: http2.IncomingHttpHeaders;
    trailers: http2.IncomingHttpHeaders;
    body: Buffer;
  }>((resolve, reject) => {
    const session = http2.connect(server.baseUrl);
    session.on("error", reject);
    const req = session.request({
      ":method": "POST",
      ":path": path,
      "content-type": contentType,
      te: "trailers",
      ...extraHeaders,
    });
    let headers: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    req.on("response", (h) => {
      headers = h;
    });
    req.on("trailers", (t) => {
      trailers = t;
    });
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      session.close();
      resolve({ headers, trailers, body: Buffer.concat(chunks) });
    });
    req.on("error", reject);
    req.end(body);
  });
}

/** Field 1 declared 16 bytes long, 2 bytes follow: not a message. */
const GARBAGE = new Uint8Array([0x0a, 0x10, 0x61, 0x62]);

function statusFrom(fields: http2.IncomingHttpHeaders) {
  const bin = fields["grpc-status-details-bin"] as string | undefined;
  expect(bin, "grpc-status-details-bin").toBeDefined();
  const status = fromBinary(StatusSchema, Buffer.from(bin!, "base64"));
  const info = status.details
    .map((d) => anyUnpack(d, ErrorInfoSchema))
    .find((x) => x !== undefined);
  return { code: Number(fields["grpc-status"]), reason: info?.reason };
}

describe("bodies that do not decode", () => {
  it("Connect JSON: malformed JSON and a bad field value", async () => {
    const malformed = await connectUnary(
      "/latchkey.v1.KvService/Get",
      "application/json",
      '{"key":',
    );
    expect(malformed.status).toBe(400);
    expect(malformed.json.code).toBe("invalid_argument");
    // The parser's own words (V8's "Unexpected end of JSON input") stay inside.
    expect(malformed.json.message).toBe(
      "the request is not a valid latchkey.v1.GetRequest message (JSON)",
    );
    expect(reasonOf(malformed.json.details)).toBe("INVALID_ARGUMENT");
    const badField = await connectUnary(
      "/latchkey.v1.KvService/Put",
      "application/json",
      '{"key":"a","precondition":{"version":"abc"}}',
    );
    expect(badField.json.code).toBe("invalid_argument");
    expect(badField.json.message).toMatch(/^field version: /);
    expect(infoOf(badField.json.details)).toMatchObject({
      reason: "INVALID_ARGUMENT",
      metadata: { field: "version" },
    });
    const badEnum = await connectUnary(
      "/latchkey.v1.KvService/Txn",
      "application/json",
      '{"compare":[{"key":"a","operator":"EQUALS","version":"1"}]}',
    );
    expect(badEnum.json.message).toBe('invalid latchkey.v1.Compare.Operator value: "EQUALS"');
    expect(badEnum.json.code).toBe("invalid_argument");
    expect(reasonOf(badEnum.json.details)).toBe("INVALID_ARGUMENT");
    const badDuration = await connectUnary(
      "/latchkey.v1.KvService/Put",
      "application/json",
      '{"key":"a","ttl":"5x"}',
    );
    expect(badDuration.json.message).toBe('invalid google.protobuf.Duration value: "5x"');
    expect(reasonOf(badDuration.json.details)).toBe("INVALID_ARGUMENT");
  });

  it("Connect JSON: an unknown field name is refused, not ignored", async () => {
    const res = await connectUnary("/latchkey.v1.KvService/Get", "application/json", '{"kee":"a"}');
    expect(res.json.code).toBe("invalid_argument");
    expect(res.json.message).toBe('unknown field "kee" for latchkey.v1.GetRequest');
    expect(infoOf(res.json.details)?.metadata).toEqual({ field: "kee" });
  });

  it("Connect binary: INVALID_ARGUMENT, not Connect's INTERNAL", async () => {
    const res = await connectUnary("/latchkey.v1.KvService/Get", "application/proto", GARBAGE);
    expect(res.status).toBe(400);
    expect(res.json.code).toBe("invalid_argument");
    expect(res.json.message).toBe(
      "the request is not a valid latchkey.v1.GetRequest message (binary)",
    );
    expect(reasonOf(res.json.details)).toBe("INVALID_ARGUMENT");
  });

  it("gRPC on the lean path (unary)", async () => {
    const res = await rawH2("/latchkey.v1.KvService/Get", "application/grpc", frame(GARBAGE));
    const fields = { ...res.headers, ...res.trailers };
    expect(statusFrom(fields)).toEqual({ code: Code.InvalidArgument, reason: "INVALID_ARGUMENT" });
  });

  it("gRPC on the lean path: no message, or two, for a unary method is UNIMPLEMENTED", async () => {
    const valid = frame(new Uint8Array([0x0a, 0x01, 0x61])); // GetRequest{key: "a"}
    for (const body of [new Uint8Array(0), Buffer.concat([valid, valid])]) {
      const res = await rawH2("/latchkey.v1.KvService/Get", "application/grpc", body);
      const fields = { ...res.headers, ...res.trailers };
      expect(statusFrom(fields)).toEqual({ code: Code.Unimplemented, reason: "UNIMPLEMENTED" });
    }
  });

  it("server streams over Connect and gRPC-Web: the end of stream carries the ErrorInfo", async () => {
    const connect = await rawH2(
      "/latchkey.v1.WatchService/Watch",
      "application/connect+json",
      frame(Buffer.from('{"prefix":')),
    );
    const end = envelopes(connect.body).at(-1)!;
    expect(end.flags & 0b10).toBe(0b10);
    const { error } = JSON.parse(end.payload.toString("utf8"));
    expect(error.code).toBe("invalid_argument");
    expect(error.message).toBe(
      "the request is not a valid latchkey.v1.WatchRequest message (JSON)",
    );
    expect(reasonOf(error.details)).toBe("INVALID_ARGUMENT");

    const web = await rawH2(
      "/latchkey.v1.WatchService/Watch",
      "application/grpc-web+proto",
      frame(GARBAGE),
    );
    const trailer = envelopes(web.body).find((e) => e.flags & 0x80);
    const fields = trailerFields(trailer!.payload);
    expect(statusFrom(fields)).toEqual({ code: Code.InvalidArgument, reason: "INVALID_ARGUMENT" });
  });

  it("gRPC on the lean path: a malformed grpc-timeout is INVALID_ARGUMENT, a zero one expired", async () => {
    const valid = frame(new Uint8Array([0x0a, 0x01, 0x61])); // GetRequest{key: "a"}
    const cases = [
      ["abc", Code.InvalidArgument, "INVALID_ARGUMENT"],
      ["0n", Code.DeadlineExceeded, "DEADLINE_EXCEEDED"],
    ] as const;
    for (const [timeout, code, reason] of cases) {
      const res = await rawH2("/latchkey.v1.KvService/Get", "application/grpc", valid, {
        "grpc-timeout": timeout,
      });
      expect(statusFrom({ ...res.headers, ...res.trailers })).toEqual({ code, reason });
    }
  });

  it("answers a method it does not accept with 405 and Allow: POST", async () => {
    const res = await fetch(`${server.baseUrl}/latchkey.v1.KvService/Get`);
    expect(res.status).toBe(405);
    expect(res.headers.get("allow")).toBe("POST");
  });

  it("gRPC through Connect (a bidi stream)", async () => {
    const res = await rawH2(
      "/latchkey.v1.LeaseService/KeepAlive",
      "application/grpc",
      frame(GARBAGE),
    );
    const fields = { ...res.headers, ...res.trailers };
    expect(statusFrom(fields)).toEqual({ code: Code.InvalidArgument, reason: "INVALID_ARGUMENT" });
  });
});
