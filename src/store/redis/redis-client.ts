/**
 * ioredis clients configured for a state service (see STACK.md): no offline
 * queue and no per-command retries, so a dead Redis fails calls at once
 * instead of queueing them; a command timeout; endless reconnection with a
 * capped backoff, so the service recovers without a restart; an `error`
 * listener that logs at warn, rate-limited. Also the one mapping of Redis
 * failures to StateError.
 */
import { Redis } from "ioredis";
import type { Logger } from "pino";
import type { RedisSettings } from "../../config.js";
import { backendUnavailable, Reason, StateError } from "../../core/errors.js";

/** Reconnect delays: 25, 50, 100 ... ms, capped at this. */
const MAX_RECONNECT_DELAY_MS = 1000;
/** At most one connection-error log line per this interval (the rest are counted). */
const ERROR_LOG_INTERVAL_MS = 5000;

/** ioredis retryStrategy: never gives up (the service must recover on its own). */
export function reconnectDelay(attempt: number): number {
  return Math.min(25 * 2 ** Math.min(Math.max(attempt - 1, 0), 10), MAX_RECONNECT_DELAY_MS);
}

export interface ClientOptions {
  /**
   * For blocking reads (XREAD BLOCK): no command timeout (the caller arms its
   * own, longer than the block).
   */
  readonly blocking?: boolean;
}

/** A client that is not connected yet: call `connect()`. */
export function createRedisClient(
  settings: RedisSettings,
  url: string,
  logger: Logger,
  name: string,
  options: ClientOptions = {},
): Redis {
  const client = new Redis(url, {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    // A command lost with its connection is failed, never resent: it may have
    // been applied, and the caller was told UNAVAILABLE.
    autoResendUnfulfilledCommands: false,
    ...(options.blocking ? {} : { commandTimeout: settings.commandTimeoutMs }),
    connectTimeout: settings.connectTimeoutMs,
    // Auto-pipelining measured here (store calls on one client, 2 cores, A/B
    // alternated over 5 rounds): it cost about half the throughput at
    // concurrency 1 (setImmediate per batch) and 20-40% at 16, and gained
    // nothing at 256; Redis already reads back-to-back commands in one go.
    enableAutoPipelining: false,
    retryStrategy: reconnectDelay,
    // After a failover the old primary answers READONLY: reconnect to find the new one.
    reconnectOnError: (error) => error.message.startsWith("READONLY"),
    connectionName: name,
  });
  let lastLog = 0;
  let suppressed = 0;
  client.on("error", (error: Error) => {
    const now = Date.now();
    if (now - lastLog < ERROR_LOG_INTERVAL_MS) {
      suppressed++;
      return;
    }
    logger.warn(
      { client: name, error: error.message, suppressed },
      "redis connection error (reconnecting)",
    );
    lastLog = now;
    suppressed = 0;
  });
  return client;
}

/** Reply errors that mean "try again later", not a bug. */
const TRANSIENT_REPLIES = [
  "OOM",
  "BUSY",
  "LOADING",
  "READONLY",
  "MASTERDOWN",
  "CLUSTERDOWN",
  "TRYAGAIN",
  "MOVED",
  "ASK",
  "NOREPLICAS",
];

/**
 * Maps anything a Redis call threw to a StateError: StateErrors pass through;
 * connection loss, timeouts and transient replies become UNAVAILABLE
 * (BACKEND_UNAVAILABLE); any other reply error (a script bug) is INTERNAL.
 * The Redis text is kept only as the cause, which is logged, never sent.
 */
export function toStoreError(error: unknown): StateError {
  if (error instanceof StateError) return error;
  if (error instanceof Error && error.name === "ReplyError") {
    const word = error.message.split(" ", 1)[0] ?? "";
    if (!TRANSIENT_REPLIES.includes(word)) {
      return new StateError("internal", Reason.INTERNAL, "internal error", {}, error);
    }
  }
  return backendUnavailable(error);
}
