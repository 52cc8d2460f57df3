/**
 * Redlock lock nodes for tests: N redis-server processes and the env that
 * points a test server at them.
 *
 * A lock node votes only once it has been up for LATCHKEY_MAX_LOCK_TTL_MS,
 * unless it fsyncs every write: start nodes with `persist: true` (AOF,
 * appendfsync always) when they must vote at once, e.g. under the lock
 * contract's 60 s maximum lock TTL.
 */
import { Redis } from "ioredis";
import { type RedisProcess, startRedis } from "./redis-server.js";

export interface LockNodeSet {
  readonly nodes: readonly RedisProcess[];
  /** LATCHKEY_LOCK_NODES for these nodes. */
  env(): Record<string, string>;
  /** A plain client to one node, to look at its keys (closed by stop()). */
  inspect(i: number): Redis;
  stop(): Promise<void>;
}

export async function startLockNodes(
  count: number,
  options: { persist?: boolean } = {},
): Promise<LockNodeSet> {
  const nodes = await Promise.all(
    Array.from({ length: count }, () => startRedis({ persist: options.persist ?? false })),
  );
  const inspectors = new Map<number, Redis>();
  return {
    nodes,
    env: () => ({ LATCHKEY_LOCK_NODES: nodes.map((n) => n.url).join(",") }),
    inspect(i) {
      let client = inspectors.get(i);
      if (!client) {
        client = new Redis(nodes[i]!.url, { maxRetriesPerRequest: 1, lazyConnect: false });
        client.on("error", () => undefined);
        inspectors.set(i, client);
      }
      return client;
    },
    async stop() {
      for (const client of inspectors.values()) client.disconnect();
      await Promise.all(nodes.map((n) => n.stop()));
    },
  };
}
