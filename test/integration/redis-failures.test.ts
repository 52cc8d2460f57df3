/**
 * Redis faults through the real server, each on a redis-server of its own:
 * a dead or hung Redis answers UNAVAILABLE fast and the service recovers by
 * itself; a Redis that comes back empty, or with older data, answers
 * DATA_LOSS BACKEND_RESET (never NOT_FOUND, never a reused revision); the
 * start log says how durable the Redis is; an empty script cache (SCRIPT FLUSH,
 * restart) is reloaded transparently; an eviction policy is refused.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { Redis } from "ioredis";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { KvService } from "../../src/gen/latchkey/v1/kv_pb.js";
import { RedisKvStore } from "../../src/store/redis/redis-kv-store.js";
import { loadScripts } from "../../src/store/redis/scripts.js";
import { type Clients, connectClients } from "../support/clients.js";
import { expectError } from "../support/errors.js";
import { rawClient, redisSettings, startStore, watchSettings } from "../support/redis-kv.js";
import { type RedisProcess, startRedis } from "../support/redis-server.js";
import { startTestServer, type TestServer } from "../support/test-server.js";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array | undefined) => new TextDecoder().decode(b);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Retries `call` until it stops failing UNAVAILABLE (Redis reconnecting), up to `ms`. */
async function eventually<T>(call: () => Promise<T>, ms = 5000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      return await call();
    } catch (error) {
      const unavailable = error instanceof ConnectError && error.code === Code.Unavailable;
      if (!unavailable || Date.now() > deadline) throw error;
      await sleep(50);
    }
  }
}

async function timed<T>(promise: Promise<T>): Promise<[T, number]> {
  const started = performance.now();
  const value = await promise;
  return [value, performance.now() - started];
}

describe("Redis faults", () => {
  const cleanup: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const step of cleanup.splice(0).reverse()) await step();
  });

  async function setup(
    options: { persist?: boolean; env?: Record<string, string> } = {},
  ): Promise<{ redis: RedisProcess; server: TestServer; clients: Clients; raw: Redis }> {
    const redis = await startRedis(options.persist ? { persist: true } : {});
    cleanup.push(() => redis.stop());
    const server = await startTestServer({
      backend: "redis",
      redisUrl: redis.url,
      ...(options.env ? { env: options.env } : {}),
    });
    cleanup.push(() => server.close());
    const clients = connectClients(server.baseUrl);
    cleanup.push(() => clients.close());
    const raw = rawClient(redis.url);
    cleanup.push(() => void raw.disconnect());
    return { redis, server, clients, raw };
  }

  it("answers UNAVAILABLE well under a second when Redis dies, and recovers once it is back", async () => {
    const { redis, clients } = await setup({ persist: true });
    const kv = clients.client(KvService);
    await kv.put({ key: "k", value: enc("v") });

    // A call in flight when Redis dies fails at once (not after the command timeout).
    redis.pause();
    const inFlight = timed(
      expectError(kv.get({ key: "k" }), Code.Unavailable, "BACKEND_UNAVAILABLE"),
    );
    await sleep(50);
    await redis.kill();
    expect((await inFlight)[1]).toBeLessThan(1000);

    // Calls while Redis is down fail fast, with no Redis text in the message.
    for (const call of [
      () => kv.get({ key: "k" }),
      () => kv.put({ key: "k", value: enc("w") }),
      () => kv.range({ prefix: "k" }),
    ]) {
      const [, ms] = await timed(expectError(call(), Code.Unavailable, "BACKEND_UNAVAILABLE"));
      expect(ms).toBeLessThan(500);
    }
    const error = await kv.get({ key: "k" }).catch((e: unknown) => ConnectError.from(e));
    expect((error as ConnectError).rawMessage).toBe("backend unavailable");

    await redis.restart();
    const got = await eventually(() => kv.get({ key: "k" }));
    expect(dec(got.kv?.value)).toBe("v");
    expect(got.header?.revision).toBe(1n);
    expect((await kv.put({ key: "k", value: enc("w") })).header?.revision).toBe(2n);
  });

  it("answers UNAVAILABLE after the command timeout when Redis hangs, then recovers", async () => {
    const { redis, clients } = await setup({
      env: { LATCHKEY_REDIS_COMMAND_TIMEOUT_MS: "150" },
    });
    const kv = clients.client(KvService);
    await kv.put({ key: "k", value: enc("v") });
    redis.pause();
    const [, ms] = await timed(
      expectError(kv.get({ key: "k" }), Code.Unavailable, "BACKEND_UNAVAILABLE"),
    );
    expect(ms).toBeLessThan(1000);
    redis.resume();
    expect(dec((await eventually(() => kv.get({ key: "k" }))).kv?.value)).toBe("v");
  });

  /** A KV client of a new service replica on `server`'s Redis and key prefix. */
  async function anotherReplica(redis: RedisProcess, server: TestServer) {
    const replica = await startTestServer({
      backend: "redis",
      redisUrl: redis.url,
      keyPrefix: server.config.redis.keyPrefix,
    });
    cleanup.push(() => replica.close());
    const clients = connectClients(replica.baseUrl);
    cleanup.push(() => clients.close());
    return clients.client(KvService);
  }

  it("answers DATA_LOSS BACKEND_RESET, never NOT_FOUND or revision 1, when Redis restarts empty", async () => {
    const { redis, server, clients, raw } = await setup();
    const kv = clients.client(KvService);
    await kv.put({ key: "k", value: enc("v") });
    await kv.put({ key: "k", value: enc("w") });
    await redis.restart();

    const reset = () =>
      expectError(
        eventually(() => kv.get({ key: "k" })),
        Code.DataLoss,
        "BACKEND_RESET",
      );
    await reset();
    // Latched: writes, ranges and other keys fail the same way; nothing is recreated.
    await expectError(kv.put({ key: "k", value: enc("x") }), Code.DataLoss, "BACKEND_RESET");
    await expectError(kv.put({ key: "new", value: enc("x") }), Code.DataLoss, "BACKEND_RESET");
    await expectError(kv.range({ prefix: "" }), Code.DataLoss, "BACKEND_RESET");
    await expectError(kv.get({ key: "missing" }), Code.DataLoss, "BACKEND_RESET");
    await raw.ping().catch(() => undefined);
    expect(await eventually(() => raw.dbsize(), 2000)).toBe(0);

    // A restarted service accepts the loss (a new epoch); the old one stays latched.
    const freshKv = await anotherReplica(redis, server);
    expect((await freshKv.get({ key: "k" })).kv).toBeUndefined();
    expect((await freshKv.put({ key: "k", value: enc("y") })).header?.revision).toBe(1n);
    await reset();
  });

  it("answers DATA_LOSS BACKEND_RESET when Redis comes back with older data (an old RDB snapshot)", async () => {
    const { redis, server, clients, raw } = await setup();
    const kv = clients.client(KvService);
    await kv.put({ key: "k", value: enc("v") });
    await raw.save(); // the snapshot Redis will come back from: revision 1, epoch marker included
    await kv.put({ key: "k", value: enc("w") });
    const acknowledged = await kv.put({ key: "k", value: enc("x") });
    expect(acknowledged.header?.revision).toBe(3n);
    await redis.restart(); // loads dump.rdb: revisions 2 and 3 are gone

    await expectError(
      eventually(() => kv.get({ key: "k" })),
      Code.DataLoss,
      "BACKEND_RESET",
    );
    // Latched: the write is refused and does not land (a new replica, which
    // never saw revision 3, still reads the snapshot's value at revision 1).
    await expectError(kv.put({ key: "k", value: enc("y") }), Code.DataLoss, "BACKEND_RESET");
    await raw.ping().catch(() => undefined);
    const seen = await (await anotherReplica(redis, server)).get({ key: "k" });
    expect({ value: dec(seen.kv?.value), revision: seen.header?.revision }).toEqual({
      value: "v",
      revision: 1n,
    });
  });

  it("detects the reset from the feed and the sweeper path too", async () => {
    const redis = await startRedis();
    cleanup.push(() => redis.stop());
    const store = await startStore(redis.url);
    cleanup.push(() => store.close());
    await store.txn("t", {
      fences: [],
      compares: [],
      success: [{ kind: "get", key: "k" }],
      failure: [],
    });
    await redis.restart();
    const swept = await eventuallyStore(() => store.sweepExpired("t", 10));
    expect(swept).toMatchObject({ code: "data_loss", reason: "BACKEND_RESET" });
    await expect(store.read("t", 0, 10)).rejects.toMatchObject({ reason: "BACKEND_RESET" });
    expect(await store.ready()).toBe(false);
  });

  it("reloads scripts transparently after SCRIPT FLUSH (EVALSHA -> NOSCRIPT -> EVAL)", async () => {
    const { clients, raw } = await setup();
    const kv = clients.client(KvService);
    await kv.put({ key: "k", value: enc("v") });
    const shas = loadScripts().map((s) => s.sha);
    await raw.script("FLUSH");
    expect(await raw.script("EXISTS", ...shas)).toEqual(shas.map(() => 0));

    expect(dec((await kv.get({ key: "k" })).kv?.value)).toBe("v");
    expect((await kv.put({ key: "k", value: enc("w") })).header?.revision).toBe(2n);
    // The store really tried EVALSHA first and fell back on NOSCRIPT.
    const stats = String(await raw.info("errorstats"));
    expect(stats).toMatch(/errorstat_NOSCRIPT:count=[1-9]/);
    const loaded = (await raw.script("EXISTS", ...shas)) as number[];
    expect(loaded.filter((x) => x === 1).length).toBeGreaterThanOrEqual(2);
  });

  it("keeps working after a restart that kept the data but lost the script cache", async () => {
    const { redis, clients, raw } = await setup({ persist: true });
    const kv = clients.client(KvService);
    await kv.put({ key: "k", value: enc("v") });
    await redis.restart();
    const got = await eventually(() => kv.get({ key: "k" }));
    expect(dec(got.kv?.value)).toBe("v");
    expect((await kv.put({ key: "k", value: enc("w") })).header?.revision).toBe(2n);
    await raw.ping().catch(() => undefined);
    expect(await eventually(() => raw.dbsize(), 2000)).toBeGreaterThan(0);
  });

  it("ready() reloads a flushed script cache and checks the epoch marker", async () => {
    const redis = await startRedis();
    cleanup.push(() => redis.stop());
    const store = await startStore(redis.url, { keyPrefix: "rdy" });
    cleanup.push(() => store.close());
    const raw = rawClient(redis.url);
    cleanup.push(() => void raw.disconnect());
    const shas = loadScripts().map((s) => s.sha);
    expect(await store.ready()).toBe(true);
    await raw.script("FLUSH");
    expect(await store.ready()).toBe(true);
    expect(await raw.script("EXISTS", ...shas)).toEqual(shas.map(() => 1));
    await raw.del("rdy:epoch");
    expect(await store.ready()).toBe(false);
    await expect(store.get("t", ["k"])).rejects.toMatchObject({ reason: "BACKEND_RESET" });
  });

  it("refuses to start on a Redis whose maxmemory-policy may evict state", async () => {
    const redis = await startRedis({ args: ["--maxmemory-policy", "allkeys-lru"] });
    cleanup.push(() => redis.stop());
    await expect(startTestServer({ backend: "redis", redisUrl: redis.url })).rejects.toThrow(
      /maxmemory-policy allkeys-lru.*noeviction/,
    );
  });

  it("tells at start how durable the state Redis is (AOF with fsync always, or not)", async () => {
    const messages = async (redis: RedisProcess) => {
      const lines: { level: number; msg: string }[] = [];
      const log = pino(
        { level: "info" },
        { write: (line: string) => lines.push(JSON.parse(line)) },
      );
      const store = new RedisKvStore(redisSettings(), watchSettings(), log, redis.url);
      await store.start();
      await store.close();
      return lines.filter((line) => /append|fsync/.test(line.msg));
    };
    const volatile = await startRedis();
    cleanup.push(() => volatile.stop());
    const durable = await startRedis({ persist: true });
    cleanup.push(() => durable.stop());
    const everysec = await startRedis({
      args: ["--appendonly", "yes", "--appendfsync", "everysec"],
    });
    cleanup.push(() => everysec.stop());

    const [onVolatile] = await messages(volatile);
    expect(onVolatile).toMatchObject({ level: 40 });
    expect(onVolatile!.msg).toMatch(/no append-only file.*appendfsync always/);
    const [onEverysec] = await messages(everysec);
    expect(onEverysec).toMatchObject({ level: 40 });
    expect(onEverysec!.msg).toMatch(/lose the last acknowledged writes.*everysec/);
    const [onDurable] = await messages(durable);
    expect(onDurable).toMatchObject({ level: 30, msg: "the state Redis fsyncs every write" });
  });

  it("starts with a warning when CONFIG is disabled (managed Redis)", async () => {
    const redis = await startRedis({ args: ["--rename-command", "CONFIG", ""] });
    cleanup.push(() => redis.stop());
    const store = await startStore(redis.url);
    cleanup.push(() => store.close());
    expect(await store.ready()).toBe(true);
  });
});

/** Retries a store call while it fails UNAVAILABLE; returns the first other error. */
async function eventuallyStore(call: () => Promise<unknown>, ms = 5000): Promise<unknown> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      await call();
      throw new Error("the call was expected to fail");
    } catch (error) {
      const code = (error as { code?: string }).code;
      if (code !== "unavailable" || Date.now() > deadline) return error;
      await sleep(50);
    }
  }
}
