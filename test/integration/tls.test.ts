/**
 * TLS on the API port: HTTP/2 (grpc-js, native gRPC) and HTTP/1.1 (https,
 * Connect JSON) on one port through ALPN, and client certificates required
 * when a CA is configured. The certificates are made here with openssl.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import https from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { grpcClient, type RunningServer, startLatchkey, unary } from "../support/transport.js";

interface Pki {
  dir: string;
  ca: Buffer;
  cert: string;
  key: string;
  caFile: string;
  clientCert: Buffer;
  clientKey: Buffer;
}

function makePki(): Pki {
  const dir = mkdtempSync(join(tmpdir(), "latchkey-tls-"));
  const f = (name: string) => join(dir, name);
  const ssl = (...args: string[]) => execFileSync("openssl", args, { stdio: "pipe" });
  ssl(
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-days",
    "2",
    "-subj",
    "/CN=latchkey test CA",
    "-keyout",
    f("ca.key"),
    "-out",
    f("ca.pem"),
  );
  writeFileSync(f("server.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n");
  for (const who of ["server", "client"]) {
    ssl(
      "req",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-subj",
      `/CN=${who}`,
      "-keyout",
      f(`${who}.key`),
      "-out",
      f(`${who}.csr`),
    );
    ssl(
      "x509",
      "-req",
      "-in",
      f(`${who}.csr`),
      "-CA",
      f("ca.pem"),
      "-CAkey",
      f("ca.key"),
      "-CAcreateserial",
      "-days",
      "2",
      "-out",
      f(`${who}.pem`),
      ...(who === "server" ? ["-extfile", f("server.ext")] : []),
    );
  }
  return {
    dir,
    ca: readFileSync(f("ca.pem")),
    caFile: f("ca.pem"),
    cert: f("server.pem"),
    key: f("server.key"),
    clientCert: readFileSync(f("client.pem")),
    clientKey: readFileSync(f("client.key")),
  };
}

function httpsPost(
  port: number,
  path: string,
  body: string,
  tls: { ca?: Buffer; cert?: Buffer; key?: Buffer },
): Promise<{ status: number; body: string; alpn: string | false | null }> {
  return new Promise((resolve, reject) => {
    const options: https.RequestOptions & import("node:tls").ConnectionOptions = {
      host: "127.0.0.1",
      // SNI takes a name, not an IP (Node warns); the certificate holds both.
      servername: "localhost",
      port,
      path,
      method: "POST",
      headers: { "content-type": "application/json" },
      agent: false,
      // An HTTP/1.1-only client, as curl --http1.1 is.
      ALPNProtocols: ["http/1.1"],
      ...tls,
    };
    const req = https.request(options, (res) => {
      let text = "";
      res.on("data", (c: Buffer) => {
        text += c.toString();
      });
      res.on("end", () =>
        resolve({
          status: res.statusCode ?? 0,
          body: text,
          alpn: (res.socket as import("node:tls").TLSSocket).alpnProtocol,
        }),
      );
    });
    req.on("error", reject);
    req.end(body);
  });
}

/** grpc-js dials 127.0.0.1 but sends SNI and checks the certificate for this name. */
const BY_NAME = { "grpc.ssl_target_name_override": "localhost" };

let pki: Pki;
beforeAll(() => {
  pki = makePki();
});

describe("TLS without client certificates", () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await startLatchkey({ LATCHKEY_TLS_CERT: pki.cert, LATCHKEY_TLS_KEY: pki.key });
  });
  afterAll(() => server.close());

  it("serves native gRPC over h2 (grpc-js)", async () => {
    const kv = grpcClient(
      "latchkey.v1.KvService",
      server.target,
      BY_NAME,
      grpc.credentials.createSsl(pki.ca),
    );
    try {
      expect((await unary(kv, "put", { key: "tls/a", value: Buffer.from("v") })).status.code).toBe(
        0,
      );
      const got = await unary<{ kv: { value: Buffer } }>(kv, "get", { key: "tls/a" });
      expect(got.response?.kv.value.toString()).toBe("v");
    } finally {
      kv.close();
    }
  });

  it("serves Connect JSON over HTTP/1.1 on the same port", async () => {
    const res = await httpsPost(server.port, "/latchkey.v1.KvService/Get", '{"key":"tls/a"}', {
      ca: pki.ca,
    });
    expect(res.status).toBe(200);
    expect(res.alpn).toBe("http/1.1");
    expect(JSON.parse(res.body).kv.key).toBe("tls/a");
  });
});

describe("TLS with a client CA (mutual TLS)", () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await startLatchkey({
      LATCHKEY_TLS_CERT: pki.cert,
      LATCHKEY_TLS_KEY: pki.key,
      LATCHKEY_TLS_CA: pki.caFile,
    });
  });
  afterAll(() => server.close());

  it("accepts clients with a certificate of the CA, over h2 and HTTP/1.1", async () => {
    const kv = grpcClient(
      "latchkey.v1.KvService",
      server.target,
      BY_NAME,
      grpc.credentials.createSsl(pki.ca, pki.clientKey, pki.clientCert),
    );
    try {
      expect((await unary(kv, "put", { key: "mtls/a", value: Buffer.from("v") })).status.code).toBe(
        0,
      );
    } finally {
      kv.close();
    }
    const res = await httpsPost(server.port, "/latchkey.v1.KvService/Get", '{"key":"mtls/a"}', {
      ca: pki.ca,
      cert: pki.clientCert,
      key: pki.clientKey,
    });
    expect(res.status).toBe(200);
  });

  it("refuses clients without a certificate", async () => {
    const kv = grpcClient(
      "latchkey.v1.KvService",
      server.target,
      BY_NAME,
      grpc.credentials.createSsl(pki.ca),
    );
    try {
      const out = await unary(kv, "get", { key: "mtls/a" }, { deadline: Date.now() + 3000 });
      expect(out.status.code).toBe(grpc.status.UNAVAILABLE);
    } finally {
      kv.close();
    }
    await expect(
      httpsPost(server.port, "/latchkey.v1.KvService/Get", '{"key":"mtls/a"}', { ca: pki.ca }),
    ).rejects.toThrow();
  });
});
