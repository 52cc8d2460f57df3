/**
 * Every protocol on one port: the same script of calls gives identical
 * results over native gRPC on the lean path, native gRPC through Connect
 * (lean path off), gRPC-Web, Connect binary over h2 and Connect JSON over
 * HTTP/1.1; curl works; the first-bytes sniff survives split, silent and
 * garbage connections; idle connections are closed.
 */
import { execFile } from "node:child_process";
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import { promisify } from "node:util";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorInfoSchema } from "../../src/gen/google/rpc/error_details_pb.js";
import { KvService } from "../../src/gen/latchkey/v1/kv_pb.js";
import { connectClients, type Protocol } from "../support/clients.js";
import { type RunningServer, startLatchkey } from "../support/transport.js";

const run = promisify(execFile);
const enc = (s: string) => new TextEncoder().encode(s);

/** A fixed script of calls; errors become {code, reason, message}. */
async function script(protocol: Protocol, baseUrl: string): Promise<unknown[]> {
  const clients = connectClients(baseUrl, protocol);
  const kv = clients.client(KvService);
  const results: unknown[] = [];
  const step = async (call: () => Promise<unknown>) => {
    try {
      results.push(await call());
    } catch (e) {
      const error = ConnectError.from(e);
      results.push({
        code: error.code,
        message: error.rawMessage,
        reason: error.findDetails(ErrorInfoSchema)[0]?.reason,
        metadata: error.findDetails(ErrorInfoSchema)[0]?.metadata,
      });
    }
  };
  try {
    await step(() => kv.put({ key: "p/a", value: enc("1") }));
    await step(() => kv.put({ key: "p/b", value: enc("2"), prevKv: true }));
    await step(() => kv.put({ key: "p/b", value: enc("3"), prevKv: true }));
    await step(() => kv.get({ key: "p/a" }));
    await step(() =>
      kv.put({
        key: "p/a",
        value: enc("x"),
        precondition: { condition: { case: "mustNotExist", value: true } },
      }),
    );
    await step(() => kv.batchGet({ keys: ["p/b", "p/missing", "p/a"] }));
    await step(() => kv.range({ prefix: "p/" }));
    await step(() => kv.delete({ key: "p/a", prevKv: true }));
    await step(() => kv.get({ key: "" }));
    await step(() => kv.get({ key: "p/a" }));
  } finally {
    clients.close();
  }
  return results;
}

describe("one port, every protocol", () => {
  const servers: RunningServer[] = [];
  afterAll(async () => {
    await Promise.all(servers.map((s) => s.close()));
  });
  const fresh = async (env: Record<string, string> = {}) => {
    const server = await startLatchkey(env);
    servers.push(server);
    return server;
  };

  it("gives identical results over every protocol and both gRPC paths", async () => {
    const lean = await script("grpc", (await fresh()).baseUrl);
    const viaConnect = await script("grpc", (await fresh({ LATCHKEY_GRPC_LEAN: "false" })).baseUrl);
    const grpcWeb = await script("grpc-web", (await fresh()).baseUrl);
    const connectH2 = await script("connect", (await fresh()).baseUrl);
    const connectH1 = await script("connect-http1", (await fresh()).baseUrl);
    expect(lean).toHaveLength(10);
    expect((lean[4] as { code: Code }).code).toBe(Code.Aborted);
    expect((lean[4] as { reason: string }).reason).toBe("VERSION_MISMATCH");
    expect((lean[8] as { code: Code }).code).toBe(Code.InvalidArgument);
    expect(viaConnect).toEqual(lean);
    expect(grpcWeb).toEqual(lean);
    expect(connectH2).toEqual(lean);
    expect(connectH1).toEqual(lean);
  });

  describe("plain HTTP clients", () => {
    let server: RunningServer;
    beforeAll(async () => {
      server = await fresh();
    });

    it("serves Connect JSON to fetch (HTTP/1.1) with JSON errors", async () => {
      const ok = await fetch(`${server.baseUrl}/latchkey.v1.KvService/Put`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ key: "h1/a", value: Buffer.from("v").toString("base64") }),
      });
      expect(ok.status).toBe(200);
      expect(((await ok.json()) as { kv: { key: string } }).kv.key).toBe("h1/a");
      const bad = await fetch(`${server.baseUrl}/latchkey.v1.KvService/Get`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ key: "" }),
      });
      expect(bad.status).toBe(400);
      expect(((await bad.json()) as { code: string }).code).toBe("invalid_argument");
    });

    it("works with curl, over HTTP/1.1 and h2c prior knowledge", async () => {
      for (const flag of ["--http1.1", "--http2-prior-knowledge"]) {
        const { stdout } = await run("curl", [
          "-sS",
          flag,
          "-X",
          "POST",
          "-H",
          "content-type: application/json",
          "-d",
          '{"key":"h1/a"}',
          `${server.baseUrl}/latchkey.v1.KvService/Get`,
        ]);
        expect(JSON.parse(stdout).kv.key).toBe("h1/a");
      }
    });
  });
});

/** Forwards to `port`, splitting the client's first chunk after `split` bytes with a pause. */
async function splitProxy(port: number, split: number): Promise<{ port: number; close(): void }> {
  const server = net.createServer((client) => {
    const upstream = net.connect(port, "127.0.0.1");
    let first = true;
    client.on("data", (chunk: Buffer) => {
      if (first) {
        first = false;
        client.pause();
        upstream.write(chunk.subarray(0, split));
        setTimeout(() => {
          upstream.write(chunk.subarray(split));
          client.resume();
        }, 50);
      } else {
        upstream.write(chunk);
      }
    });
    upstream.pipe(client);
    client.on("error", () => upstream.destroy());
    upstream.on("error", () => client.destroy());
    client.on("close", () => upstream.destroy());
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () => server.close(),
  };
}

describe("the first-bytes sniff and connection hygiene", () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await startLatchkey({
      LATCHKEY_HANDSHAKE_TIMEOUT_MS: "200",
      LATCHKEY_IDLE_TIMEOUT_MS: "1000",
      LATCHKEY_KEEPALIVE_TIME_MS: "200",
    });
  });
  afterAll(() => server.close());

  it("handles first bytes that arrive in pieces (HTTP/1.1 and h2c)", async () => {
    const proxy = await splitProxy(server.port, 2);
    try {
      const res = await fetch(`http://127.0.0.1:${proxy.port}/latchkey.v1.KvService/Get`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: '{"key":"s/a"}',
      });
      expect(res.status).toBe(200);
      const clients = connectClients(`http://127.0.0.1:${proxy.port}`, "grpc");
      try {
        const put = await clients.client(KvService).put({ key: "s/a", value: enc("v") });
        expect(put.kv?.key).toBe("s/a");
      } finally {
        clients.close();
      }
    } finally {
      proxy.close();
    }
  });

  it("drops sockets that never send, and sockets that send garbage or too little", async () => {
    const closedWithin = (socket: net.Socket) =>
      new Promise<number>((resolve) => {
        const started = Date.now();
        socket.on("error", () => {});
        socket.resume();
        socket.on("close", () => resolve(Date.now() - started));
      });
    const silent = net.connect(server.port, "127.0.0.1");
    expect(await closedWithin(silent)).toBeLessThan(2000);
    const short = net.connect(server.port, "127.0.0.1", () => short.end("PO"));
    await closedWithin(short);
    const garbage = net.connect(server.port, "127.0.0.1", () =>
      garbage.write(Buffer.from([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])),
    );
    await closedWithin(garbage);
    const reset = net.connect(server.port, "127.0.0.1", () => reset.resetAndDestroy());
    await closedWithin(reset);
    // HTTP/2 peers too: the preface alone, or trickled, is no request. The
    // idle timeout (1 s) would close them too, but later.
    const preface = Buffer.concat([
      Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1"),
      Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]), // an empty SETTINGS frame
    ]);
    const idleH2 = net.connect(server.port, "127.0.0.1", () => idleH2.write(preface));
    expect(await closedWithin(idleH2)).toBeLessThan(800);
    const trickle = net.connect(server.port, "127.0.0.1");
    const drip = setInterval(() => {
      if (!trickle.destroyed) trickle.write(preface.subarray(0, 1));
    }, 50);
    trickle.once("connect", () => trickle.write(preface.subarray(0, 4)));
    expect(await closedWithin(trickle)).toBeLessThan(800);
    clearInterval(drip);
    // Still serving.
    const res = await fetch(`${server.baseUrl}/latchkey.v1.KvService/Get`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: '{"key":"s/a"}',
    });
    expect(res.status).toBe(200);
  });

  it("pings HTTP/2 peers, closes idle sessions and HTTP/1.1 keep-alive connections", async () => {
    const session = http2.connect(server.baseUrl);
    session.on("error", () => {});
    const h2Closed = new Promise<number>((resolve) => {
      const started = Date.now();
      session.on("close", () => resolve(Date.now() - started));
    });
    await new Promise((r) => session.once("connect", r));
    // One request (a session that never sends one is closed sooner, above).
    await new Promise<void>((resolve, reject) => {
      const req = session.request({
        ":method": "POST",
        ":path": "/latchkey.v1.KvService/Get",
        "content-type": "application/json",
      });
      req.on("error", reject);
      req.resume();
      req.on("end", () => resolve());
      req.end('{"key":"s/a"}');
    });
    // The server's keepalive PINGs arrive (and Node's client answers them).
    await new Promise((r) => session.once("ping", r));

    const agent = new http.Agent({ keepAlive: true });
    const h1Closed = await new Promise<Promise<number>>((resolve, reject) => {
      const req = http.request(
        `${server.baseUrl}/latchkey.v1.KvService/Get`,
        { method: "POST", headers: { "content-type": "application/json" }, agent },
        (res) => {
          res.resume();
          res.on("end", () => {
            const started = Date.now();
            resolve(
              new Promise<number>((closed) =>
                req.socket?.once("close", () => closed(Date.now() - started)),
              ) as never,
            );
          });
        },
      );
      req.on("error", reject);
      req.end('{"key":"s/a"}');
    }).then((p) => ({ p }));
    expect(await h2Closed).toBeLessThan(2500);
    expect(await h1Closed.p).toBeLessThan(2500);
    agent.destroy();
  });
});
