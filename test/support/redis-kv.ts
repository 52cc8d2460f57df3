/**
 * RedisKvStore instances for tests that drive the store directly (no
 * server): a unique key prefix each (or a shared one for two "replicas"), a
 * silent logger, and a raw ioredis client to inspect what the store wrote.
 */
import { Redis } from "ioredis";
import { pino } from "pino";
import type { RedisSettings, WatchSettings } from "../../src/config.js";
import { RedisKvStore } from "../../src/store/redis/redis-kv-store.js";
import { uniquePrefix } from "./test-server.js";

export interface StoreOptions {
  readonly keyPrefix?: string;
  readonly redis?: Partial<RedisSettings>;
  readonly watch?: Partial<WatchSettings>;
}

export const logger = pino({ level: process.env.LATCHKEY_TEST_LOG_LEVEL ?? "silent" });

export function redisSettings(options: StoreOptions = {}): RedisSettings {
  return {
    commandTimeoutMs: 2000,
    connectTimeoutMs: 1000,
    keyPrefix: options.keyPrefix ?? uniquePrefix(),
    ...options.redis,
  };
}

export function watchSettings(options: StoreOptions = {}): WatchSettings {
  return {
    historyEntries: 100_000,
    historyMaxAgeMs: 24 * 3600 * 1000,
    progressIntervalMs: 10_000,
    watcherBuffer: 1024,
    ...options.watch,
  };
}

/** A started store on `url`; close it after the test. */
export async function startStore(url: string, options: StoreOptions = {}): Promise<RedisKvStore> {
  const store = new RedisKvStore(redisSettings(options), watchSettings(options), logger, url);
  await store.start();
  return store;
}

/** A plain client for inspecting keys; `quit()` it after the test. */
export function rawClient(url: string): Redis {
  const client = new Redis(url, { lazyConnect: false, maxRetriesPerRequest: 1 });
  client.on("error", () => undefined);
  return client;
}
