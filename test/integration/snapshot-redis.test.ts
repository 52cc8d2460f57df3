/**
 * The SnapshotService conformance suite on the Redis backend, plus what only
 * a look at Redis itself shows: a purge leaves no key or index entry of the
 * execution behind (SCAN over the test's key prefix), and large states are
 * stored compressed.
 */
import type { Redis } from "ioredis";
import { afterAll, inject } from "vitest";
import { describeSnapshotContract } from "../contract/snapshot.contract.js";
import { rawClient } from "../support/redis-kv.js";
import { startTestServer, type TestServer } from "../support/test-server.js";

let raw: Redis | undefined;
const redis = () => {
  raw ??= rawClient(inject("redisUrl"));
  return raw;
};
afterAll(async () => {
  await raw?.quit();
});

async function scan(pattern: string): Promise<string[]> {
  const keys: string[] = [];
  let cursor = "0";
  do {
    const [next, batch] = await redis().scan(cursor, "MATCH", pattern, "COUNT", 1000);
    keys.push(...batch);
    cursor = next;
  } while (cursor !== "0");
  return keys;
}

/** Keys, index members, hash fields and values of the tenant that still name the execution. */
async function leftovers(server: TestServer, id: string): Promise<string[]> {
  const prefix = server.config.redis.keyPrefix;
  const found: string[] = [];
  const kvPrefix = `executions/${id}/`;
  for (const key of await scan(`${prefix}:*`)) {
    const snapshotKey = key.includes(":snap:");
    if ((snapshotKey && key.includes(id)) || key.includes(`:k:${kvPrefix}`)) found.push(key);
    const mentions = (s: string) =>
      s === id || s.endsWith(`:${id}`) || s.startsWith(kvPrefix) || (snapshotKey && s.includes(id));
    const type = await redis().type(key);
    if (type === "zset") {
      for (const member of await redis().zrange(key, 0, -1)) {
        if (mentions(member)) found.push(`${key} member ${member}`);
      }
    } else if (type === "hash" && !key.includes(":k:")) {
      for (const [field, value] of Object.entries(await redis().hgetall(key))) {
        if (mentions(field) || mentions(value)) found.push(`${key} field ${field}`);
      }
    }
  }
  return found;
}

describeSnapshotContract("redis backend over gRPC", {
  start: (env) => startTestServer({ backend: "redis", redisUrl: inject("redisUrl"), env }),
  leftovers,
  storedStateBytes: (server, id) =>
    redis().hstrlen(`${server.config.redis.keyPrefix}:{default}:snap:s:${id}`, "v"),
});
