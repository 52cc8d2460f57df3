/**
 * Starts a real Latchkey server on a free loopback port (port 0) for a test,
 * on the memory backend or on Redis with a key prefix of its own.
 */
import { randomBytes } from "node:crypto";
import { pino } from "pino";
import { type Config, loadConfig } from "../../src/config.js";
import { createServer } from "../../src/server.js";

export type Backend = "memory" | "redis";

export interface TestServer {
  readonly port: number;
  /** http://127.0.0.1:<port> */
  readonly baseUrl: string;
  readonly config: Config;
  close(): Promise<void>;
}

export interface TestServerOptions {
  readonly backend: Backend;
  /** Required for the redis backend. */
  readonly redisUrl?: string;
  /** Extra LATCHKEY_* variables. */
  readonly env?: Record<string, string> | undefined;
  /** Share a key prefix with another server (two replicas of one service). */
  readonly keyPrefix?: string;
}

export function uniquePrefix(): string {
  return `t${randomBytes(6).toString("hex")}`;
}

export async function startTestServer(options: TestServerOptions): Promise<TestServer> {
  const env: Record<string, string> = {
    LATCHKEY_HOST: "127.0.0.1",
    LATCHKEY_PORT: "0",
    LATCHKEY_ADMIN_PORT: "0",
    LATCHKEY_LOG_LEVEL: process.env.LATCHKEY_TEST_LOG_LEVEL ?? "silent",
    LATCHKEY_SHUTDOWN_GRACE_MS: "200",
    ...(options.backend === "redis"
      ? {
          LATCHKEY_REDIS_URL: options.redisUrl ?? "",
          LATCHKEY_REDIS_KEY_PREFIX: options.keyPrefix ?? uniquePrefix(),
        }
      : {}),
    ...options.env,
  };
  if (options.backend === "redis" && !options.redisUrl)
    throw new Error("redis backend needs redisUrl");
  const config = loadConfig(env, []);
  const logger = pino({ level: config.logLevel });
  const server = createServer(config, logger);
  const { port } = await server.start();
  return {
    port,
    baseUrl: `http://127.0.0.1:${port}`,
    config,
    close: () => server.close(),
  };
}
