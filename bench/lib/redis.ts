/**
 * A throwaway redis-server for one benchmark run: loopback, a free port,
 * pinned to the server core, no persistence (RDB and AOF off: neither
 * Latchkey's figures nor the raw Redis floor pay for fsync), noeviction as
 * in production.
 */
import { join } from "node:path";
import { Redis } from "ioredis";
import { freePort, type Managed, makeTempDir, runCommand, sleep, spawnManaged } from "./proc.js";

export interface RedisServer {
  readonly port: number;
  readonly url: string;
  readonly pid: number;
  readonly process: Managed;
  /** A client for seeding and SCRIPT LOAD (closed by stop). */
  readonly client: Redis;
  stop(): Promise<void>;
}

export async function redisVersion(): Promise<string> {
  const { stdout } = await runCommand("redis-server", ["--version"]);
  return /v=(\S+)/.exec(stdout)?.[1] ?? stdout.trim();
}

export async function startRedis(options: { core: number; logDir: string }): Promise<RedisServer> {
  const dir = makeTempDir("redis");
  const port = await freePort();
  const proc = spawnManaged(
    `redis-server:${port}`,
    "redis-server",
    [
      "--port",
      String(port),
      "--bind",
      "127.0.0.1",
      "--save",
      "",
      "--appendonly",
      "no",
      "--dir",
      dir,
      "--maxmemory-policy",
      "noeviction",
      "--io-threads",
      "1",
    ],
    { core: options.core, logFile: join(options.logDir, `redis-${port}.log`) },
  );
  const client = new Redis({ port, host: "127.0.0.1", lazyConnect: true, maxRetriesPerRequest: 1 });
  client.on("error", () => {});
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      await client.connect();
      await client.ping();
      break;
    } catch (error) {
      if (proc.child.exitCode !== null || Date.now() > deadline) {
        throw new Error(`redis-server did not start: ${(error as Error).message}\n${proc.tail()}`);
      }
      client.disconnect();
      await sleep(50);
    }
  }
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    pid: proc.pid,
    process: proc,
    client,
    async stop() {
      client.disconnect();
      await proc.stop();
    },
  };
}
