import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { KvService } from "../../src/gen/latchkey/v1/kv_pb.js";
import { connectClients, type Protocol } from "../support/clients.js";
import { startTestServer, type TestServer } from "../support/test-server.js";

describe.each(["grpc", "grpc-web", "connect", "connect-http1"] as Protocol[])(
  "smoke over %s",
  (protocol) => {
    let server: TestServer;
    let clients: ReturnType<typeof connectClients>;
    beforeAll(async () => {
      expect(inject("redisUrl")).toMatch(/^redis:/);
      server = await startTestServer({ backend: "memory" });
      clients = connectClients(server.baseUrl, protocol);
    });
    afterAll(async () => {
      clients.close();
      await server.close();
    });

    it("puts and gets a key", async () => {
      const kv = clients.client(KvService);
      const put = await kv.put({ key: "a", value: new TextEncoder().encode("v") });
      expect(put.header?.revision).toBe(1n);
      const got = await kv.get({ key: "a" });
      expect(new TextDecoder().decode(got.kv?.value)).toBe("v");
    });

    it("refuses an empty key with INVALID_ARGUMENT INVALID_KEY", async () => {
      const kv = clients.client(KvService);
      const error = await kv.get({ key: "" }).catch((e: unknown) => ConnectError.from(e));
      expect(error).toBeInstanceOf(ConnectError);
      expect((error as ConnectError).code).toBe(Code.InvalidArgument);
    });
  },
);
