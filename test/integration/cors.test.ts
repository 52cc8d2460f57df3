/**
 * CORS for browser clients (LATCHKEY_CORS_ORIGINS), through the real server
 * over HTTP/1.1 and HTTP/2: preflights of listed origins are answered with
 * what Connect and gRPC-Web send (and `authorization`), actual responses
 * expose grpc-status and the error details, other origins get no CORS
 * headers, and a server without the setting sends none.
 */
import http from "node:http";
import http2 from "node:http2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningServer, startLatchkey } from "../support/transport.js";

const ALLOWED = "https://app.example.com";

type Answer = { status: number; headers: Record<string, string | string[] | undefined> };

function http1(
  server: RunningServer,
  method: string,
  path: string,
  headers: Record<string, string>,
  body?: string,
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: "127.0.0.1", port: server.port, method, path, headers },
      (res) => {
        res.resume();
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers }));
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

function overHttp2(
  server: RunningServer,
  headers: http2.OutgoingHttpHeaders,
  body?: string,
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(server.baseUrl);
    session.on("error", reject);
    const req = session.request(headers);
    let answer: Answer = { status: 0, headers: {} };
    req.on("response", (h) => {
      answer = { status: Number(h[":status"]), headers: h };
    });
    req.resume();
    req.on("end", () => {
      session.close();
      resolve(answer);
    });
    req.on("error", reject);
    req.end(body);
  });
}

const preflight = (origin: string) => ({
  origin,
  "access-control-request-method": "POST",
  "access-control-request-headers": "content-type,connect-protocol-version,authorization",
});

describe("CORS", () => {
  let server: RunningServer;
  let plain: RunningServer;
  beforeAll(async () => {
    server = await startLatchkey({ LATCHKEY_CORS_ORIGINS: `${ALLOWED}, https://other.example` });
    plain = await startLatchkey();
  });
  afterAll(async () => {
    await server.close();
    await plain.close();
  });

  it("answers a preflight from a listed origin over HTTP/1.1", async () => {
    const res = await http1(server, "OPTIONS", "/latchkey.v1.KvService/Put", preflight(ALLOWED));
    expect(res.status).toBe(204);
    expect(res.headers["access-control-allow-origin"]).toBe(ALLOWED);
    expect(String(res.headers["access-control-allow-methods"])).toContain("POST");
    const allowed = String(res.headers["access-control-allow-headers"]).toLowerCase().split(",");
    for (const name of ["content-type", "connect-protocol-version", "authorization", "x-grpc-web"])
      expect(allowed).toContain(name);
    expect(res.headers["access-control-max-age"]).toBe("7200");
  });

  it("answers a preflight over HTTP/2 too", async () => {
    const res = await overHttp2(server, {
      ":method": "OPTIONS",
      ":path": "/latchkey.v1.KvService/Get",
      ...preflight(ALLOWED),
    });
    expect(res.status).toBe(204);
    expect(res.headers["access-control-allow-origin"]).toBe(ALLOWED);
  });

  it("exposes the status headers on a real call, and serves it", async () => {
    const res = await http1(
      server,
      "POST",
      "/latchkey.v1.KvService/Get",
      { origin: ALLOWED, "content-type": "application/json" },
      '{"key":"cors/a"}',
    );
    expect(res.status).toBe(200);
    expect(res.headers["access-control-allow-origin"]).toBe(ALLOWED);
    const exposed = String(res.headers["access-control-expose-headers"]).toLowerCase().split(",");
    for (const name of ["grpc-status", "grpc-message", "grpc-status-details-bin"])
      expect(exposed).toContain(name);

    const grpcWeb = await overHttp2(
      server,
      {
        ":method": "POST",
        ":path": "/latchkey.v1.KvService/Get",
        origin: ALLOWED,
        "content-type": "application/grpc-web+proto",
        "x-grpc-web": "1",
      },
      "\u0000\u0000\u0000\u0000\u0000",
    );
    expect(grpcWeb.status).toBe(200);
    expect(grpcWeb.headers["access-control-allow-origin"]).toBe(ALLOWED);
  });

  it("sends no CORS headers to an origin that is not listed", async () => {
    const res = await http1(
      server,
      "OPTIONS",
      "/latchkey.v1.KvService/Put",
      preflight("https://evil.example"),
    );
    // Without Access-Control-Allow-Origin the browser refuses the call.
    expect(res.headers["access-control-allow-origin"]).toBeUndefined();
  });

  it.each([
    "app.example.com",
    "https://*.example.com",
    "https://app.example.com:99999",
    "https://app.example.com/",
    "HTTPS://APP.EXAMPLE.COM",
  ])("refuses to start with LATCHKEY_CORS_ORIGINS=%s", async (origin) => {
    await expect(startLatchkey({ LATCHKEY_CORS_ORIGINS: origin })).rejects.toThrow(
      /LATCHKEY_CORS_ORIGINS .*exact origin/,
    );
  });

  it("sends no CORS headers when LATCHKEY_CORS_ORIGINS is unset", async () => {
    const res = await http1(
      plain,
      "POST",
      "/latchkey.v1.KvService/Get",
      { origin: ALLOWED, "content-type": "application/json" },
      '{"key":"cors/a"}',
    );
    expect(res.status).toBe(200);
    expect(res.headers["access-control-allow-origin"]).toBeUndefined();
  });
});
