/**
 * gRPC-Web text mode (application/grpc-web-text, base64 both ways), the
 * default of the official grpc-web JavaScript client, through the real
 * server: unary calls (a request in one or several padded base64 pieces),
 * errors with their details in the trailer frame, and a Watch whose every
 * response chunk decodes on its own as it arrives.
 */
import http2 from "node:http2";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GetRequestSchema, GetResponseSchema, KvService } from "../../src/gen/latchkey/v1/kv_pb.js";
import { WatchRequestSchema, WatchResponseSchema } from "../../src/gen/latchkey/v1/watch_pb.js";
import { connectClients } from "../support/clients.js";
import {
  decodeStatusDetails,
  envelopes,
  frame,
  type RunningServer,
  startLatchkey,
  trailerFields,
} from "../support/transport.js";

const TEXT = "application/grpc-web-text";

/** Decodes base64 text made of padded pieces, 4 characters at a time (as grpc-web does). */
function decodeText(text: string): Buffer {
  const groups = text.match(/.{4}/g) ?? [];
  expect(groups.join("")).toBe(text);
  return Buffer.concat(groups.map((g) => Buffer.from(g, "base64")));
}

describe("gRPC-Web text mode", () => {
  let server: RunningServer;
  let session: http2.ClientHttp2Session;
  beforeAll(async () => {
    server = await startLatchkey();
    session = http2.connect(server.baseUrl);
    const clients = connectClients(server.baseUrl, "grpc");
    await clients.client(KvService).put({ key: "text/a", value: new TextEncoder().encode("v") });
    clients.close();
  });
  afterAll(async () => {
    session.close();
    await server.close();
  });

  const call = (path: string, body: string) =>
    new Promise<{ contentType: string; text: string }>((resolve, reject) => {
      const req = session.request({
        ":method": "POST",
        ":path": path,
        "content-type": TEXT,
        "x-grpc-web": "1",
      });
      let contentType = "";
      let text = "";
      req.on("response", (h) => {
        contentType = String(h["content-type"]);
      });
      req.setEncoding("latin1");
      req.on("data", (c: string) => {
        text += c;
      });
      req.on("end", () => resolve({ contentType, text }));
      req.on("error", reject);
      req.end(body);
    });

  const getBody = (key: string) =>
    frame(toBinary(GetRequestSchema, create(GetRequestSchema, { key })));

  it("serves a unary call, the request in one piece or in several padded ones", async () => {
    const frame = getBody("text/a");
    for (const body of [
      frame.toString("base64"),
      frame.subarray(0, 4).toString("base64") + frame.subarray(4).toString("base64"),
    ]) {
      const res = await call("/latchkey.v1.KvService/Get", body);
      expect(res.contentType).toBe("application/grpc-web-text+proto");
      const [data, trailer] = envelopes(decodeText(res.text));
      const reply = fromBinary(GetResponseSchema, data!.payload);
      expect(new TextDecoder().decode(reply.kv?.value)).toBe("v");
      expect(trailer!.flags & 0x80).toBe(0x80);
      expect(trailerFields(trailer!.payload)["grpc-status"]).toBe("0");
    }
  });

  /** A text-mode Get with `body`: the status and ErrorInfo reason of its trailer frame. */
  const errorStatus = async (body: string) => {
    const res = await call("/latchkey.v1.KvService/Get", body);
    const [trailer] = envelopes(decodeText(res.text));
    const fields = trailerFields(trailer!.payload);
    const details = decodeStatusDetails(String(fields["grpc-status-details-bin"]));
    return { code: fields["grpc-status"], reason: details.infos[0]?.reason };
  };

  it("carries errors and their details in the trailer frame", async () => {
    const status = await errorStatus(getBody("").toString("base64"));
    expect(status).toEqual({ code: String(Code.InvalidArgument), reason: "INVALID_KEY" });
  });

  it("refuses a body that is not base64 with INVALID_ARGUMENT", async () => {
    const status = await errorStatus("!!!not*base64");
    expect(status).toEqual({ code: String(Code.InvalidArgument), reason: "INVALID_ARGUMENT" });
  });

  it("streams a Watch, each chunk decodable on its own as it arrives", async () => {
    const request = frame(
      toBinary(WatchRequestSchema, create(WatchRequestSchema, { prefix: "text/w/" })),
    );
    const req = session.request({
      ":method": "POST",
      ":path": "/latchkey.v1.WatchService/Watch",
      "content-type": TEXT,
      "x-grpc-web": "1",
    });
    req.setEncoding("latin1");
    const messages: ReturnType<typeof fromBinary<typeof WatchResponseSchema>>[] = [];
    const arrived = (count: number) =>
      new Promise<void>((resolve) => {
        const check = () => {
          if (messages.length >= count) {
            req.off("data", check);
            resolve();
          }
        };
        req.on("data", check);
        check();
      });
    req.on("data", (chunk: string) => {
      expect(chunk.length % 4).toBe(0);
      for (const e of envelopes(decodeText(chunk))) {
        if (!(e.flags & 0x80)) messages.push(fromBinary(WatchResponseSchema, e.payload));
      }
    });
    req.end(request.toString("base64"));
    await arrived(1); // the progress message that says the watch is established
    const clients = connectClients(server.baseUrl, "grpc");
    await clients.client(KvService).put({ key: "text/w/1", value: new Uint8Array([1]) });
    clients.close();
    await arrived(2);
    expect(messages[1]!.events[0]!.kv!.key).toBe("text/w/1");
    req.close();
  });
});
