/**
 * The only reader of process.env and argv. Settings come from LATCHKEY_*
 * variables, mirrored by --flags (flags win); they are validated once and
 * returned deep-frozen. Every limit of the contract is configurable here.
 */
import { parseArgs } from "node:util";
import { DEFAULT_LIMITS, type Limits } from "./core/limits.js";

/** The longest delay a Node timer can hold. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

export type LogLevel = "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";

export interface Config {
  readonly host: string;
  readonly port: number;
  readonly adminHost: string;
  /** 0 = no admin listener. */
  readonly adminPort: number;
  /** Set = Redis backend; undefined = in-memory. */
  readonly redisUrl: string | undefined;
  /** Redlock nodes; empty = the state Redis (or in-memory locks). */
  readonly lockNodes: readonly string[];
  readonly authFile: string | undefined;
  /** Origins whose browser pages may call the API (CORS); "*" = any; empty = none. */
  readonly corsOrigins: readonly string[];
  readonly tls:
    | { readonly cert: string; readonly key: string; readonly ca: string | undefined }
    | undefined;
  readonly logLevel: LogLevel;
  readonly limits: Limits;
  readonly server: ServerSettings;
  readonly redis: RedisSettings;
  readonly expiry: ExpirySettings;
  readonly watch: WatchSettings;
  readonly lock: LockSettings;
  readonly snapshot: SnapshotSettings;
  readonly rateLimit: RateLimitSettings;
}

/** Per-tenant call rate limit of each replica (api/rate-limit.ts). */
export interface RateLimitSettings {
  /** Calls per second per tenant on one replica; 0 = no limit. LATCHKEY_TENANT_RATE_LIMIT, 0. */
  readonly callsPerSecond: number;
  /** Calls a tenant may make at once after being idle. LATCHKEY_TENANT_RATE_BURST, the rate (at least 1). */
  readonly burst: number;
}

/**
 * Transport limits, all in one place. Every listener (h2c, TLS, HTTP/1.1,
 * the lean gRPC path and Connect's adapter) takes its numbers from here.
 */
export interface ServerSettings {
  /**
   * Largest request message (and the largest response message), after
   * decompression: Connect's readMaxBytes/writeMaxBytes and the lean gRPC
   * path. Bigger ones fail RESOURCE_EXHAUSTED. LATCHKEY_MAX_REQUEST_BYTES, 32 MiB.
   */
  readonly maxRequestBytes: number;
  /** Deadline applied when a unary call has none. LATCHKEY_DEFAULT_DEADLINE_MS, 30 s. */
  readonly defaultDeadlineMs: number;
  /**
   * Deadlines longer than this are cut to it: `ctx.timeoutMs()` never
   * reports more (watch and keep-alive streams are exempt: they run until
   * the client's own deadline or cancel). LATCHKEY_MAX_DEADLINE_MS, 5 min.
   */
  readonly maxDeadlineMs: number;
  /** HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS per connection. LATCHKEY_MAX_CONCURRENT_STREAMS, 1000. */
  readonly maxConcurrentStreams: number;
  /**
   * Largest header block: HTTP/2 SETTINGS_MAX_HEADER_LIST_SIZE and HTTP/1's
   * maxHeaderSize. LATCHKEY_MAX_HEADER_LIST_BYTES, 16 KiB.
   */
  readonly maxHeaderListBytes: number;
  /** Most header fields in one HTTP/2 header block (Node's maxHeaderListPairs). 256. */
  readonly maxHeaderListPairs: number;
  /**
   * Memory one HTTP/2 session may buffer (Node's maxSessionMemory, MiB);
   * above it new streams are refused (ENHANCE_YOUR_CALM). LATCHKEY_MAX_SESSION_MEMORY_MB, 64.
   */
  readonly maxSessionMemoryMb: number;
  /**
   * Connections with no open stream (HTTP/2) and HTTP/1.1 keep-alive
   * connections between requests are closed after this. LATCHKEY_IDLE_TIMEOUT_MS, 5 min.
   */
  readonly idleTimeoutMs: number;
  /**
   * A new connection must show its first bytes (cleartext: the protocol
   * sniff) or finish its TLS handshake within this, and an HTTP/1.1 request
   * must send its headers within it: slowloris sockets are dropped.
   * LATCHKEY_HANDSHAKE_TIMEOUT_MS, 10 s.
   */
  readonly handshakeTimeoutMs: number;
  /**
   * The server PINGs an HTTP/2 connection that has been silent this long and
   * drops it if no PING ACK comes within keepaliveTimeoutMs: dead peers do not
   * hold watch streams forever. Client PINGs are always answered, at any rate
   * (grpc-js and grpc-core keepalive pings every 10 s or more are never
   * answered with GOAWAY). LATCHKEY_KEEPALIVE_TIME_MS, 2 min; 0 = off.
   */
  readonly keepaliveTimeMs: number;
  /** See keepaliveTimeMs. LATCHKEY_KEEPALIVE_TIMEOUT_MS, 20 s. */
  readonly keepaliveTimeoutMs: number;
  /** How often the backend's readiness is polled for health and /readyz. LATCHKEY_READINESS_POLL_MS, 1 s. */
  readonly readinessPollMs: number;
  /**
   * Serve native gRPC (application/grpc, application/grpc+proto; unary and
   * server-streaming) on the lean path instead of Connect's adapter, about
   * 5x the calls per core; false sends every stream through Connect (for A/B
   * comparisons). LATCHKEY_GRPC_LEAN, true.
   */
  readonly grpcLean: boolean;
  /** How long SIGTERM waits for open calls before cutting them (UNAVAILABLE SHUTTING_DOWN). LATCHKEY_SHUTDOWN_GRACE_MS, 10 s. */
  readonly shutdownGraceMs: number;
}

export interface RedisSettings {
  /** A command not answered in this time fails UNAVAILABLE. */
  readonly commandTimeoutMs: number;
  readonly connectTimeoutMs: number;
  /** Prefix of every key Latchkey writes (lets tests share one Redis). */
  readonly keyPrefix: string;
}

export interface ExpirySettings {
  /** How often each replica looks for due keys, leases and locks. */
  readonly sweepIntervalMs: number;
  /** Keys expired per tenant per sweep step. */
  readonly sweepBatch: number;
}

export interface WatchSettings {
  /** Changefeed entries retained per tenant. */
  readonly historyEntries: number;
  /** Changefeed entries older than this are dropped. */
  readonly historyMaxAgeMs: number;
  readonly progressIntervalMs: number;
  /** Undelivered messages a watcher may hold before it is ended. */
  readonly watcherBuffer: number;
}

export interface LockSettings {
  /** Clock drift allowance of Redlock, as a fraction of the TTL. */
  readonly driftFactor: number;
  /** Per-node command timeout for lock operations. */
  readonly nodeTimeoutMs: number;
  /**
   * Longest lock TTL (leases holding locks are bounded by it too); a lock node
   * that restarted gets no vote until it has passed.
   */
  readonly maxLockTtlMs: number;
  /**
   * UNSAFE, for the negative-control test only: a lock node votes as soon as
   * it is reachable, even right after a restart that emptied it (no delayed
   * restart), so two owners can hold one lock at once.
   * LATCHKEY_LOCK_UNSAFE_IMMEDIATE_VOTE, false; never set it in production.
   */
  readonly unsafeImmediateVote: boolean;
}

export interface SnapshotSettings {
  readonly compressAboveBytes: number;
  readonly maxCheckpoints: number;
  readonly resumeTokenTtlMs: number;
  readonly idempotencyTtlMs: number;
}

const SETTINGS = {
  host: { env: "LATCHKEY_HOST", flag: "host" },
  port: { env: "LATCHKEY_PORT", flag: "port" },
  adminHost: { env: "LATCHKEY_ADMIN_HOST", flag: "admin-host" },
  adminPort: { env: "LATCHKEY_ADMIN_PORT", flag: "admin-port" },
  redisUrl: { env: "LATCHKEY_REDIS_URL", flag: "redis-url" },
  lockNodes: { env: "LATCHKEY_LOCK_NODES", flag: "lock-nodes" },
  authFile: { env: "LATCHKEY_AUTH_FILE", flag: "auth-file" },
  corsOrigins: { env: "LATCHKEY_CORS_ORIGINS", flag: "cors-origins" },
  tlsCert: { env: "LATCHKEY_TLS_CERT", flag: "tls-cert" },
  tlsKey: { env: "LATCHKEY_TLS_KEY", flag: "tls-key" },
  tlsCa: { env: "LATCHKEY_TLS_CA", flag: "tls-ca" },
  logLevel: { env: "LATCHKEY_LOG_LEVEL", flag: "log-level" },
  maxKeyBytes: { env: "LATCHKEY_MAX_KEY_BYTES", flag: "max-key-bytes" },
  maxValueBytes: { env: "LATCHKEY_MAX_VALUE_BYTES", flag: "max-value-bytes" },
  maxStateBytes: { env: "LATCHKEY_MAX_STATE_BYTES", flag: "max-state-bytes" },
  maxRequestBytes: { env: "LATCHKEY_MAX_REQUEST_BYTES", flag: "max-request-bytes" },
  maxBatchKeys: { env: "LATCHKEY_MAX_BATCH_KEYS", flag: "max-batch-keys" },
  maxRangePage: { env: "LATCHKEY_MAX_RANGE_PAGE", flag: "max-range-page" },
  maxTxnOps: { env: "LATCHKEY_MAX_TXN_OPS", flag: "max-txn-ops" },
  minTtlMs: { env: "LATCHKEY_MIN_TTL_MS", flag: "min-ttl-ms" },
  maxTtlMs: { env: "LATCHKEY_MAX_TTL_MS", flag: "max-ttl-ms" },
  defaultDeadlineMs: { env: "LATCHKEY_DEFAULT_DEADLINE_MS", flag: "default-deadline-ms" },
  maxDeadlineMs: { env: "LATCHKEY_MAX_DEADLINE_MS", flag: "max-deadline-ms" },
  maxConcurrentStreams: { env: "LATCHKEY_MAX_CONCURRENT_STREAMS", flag: "max-concurrent-streams" },
  maxHeaderListBytes: { env: "LATCHKEY_MAX_HEADER_LIST_BYTES", flag: "max-header-list-bytes" },
  idleTimeoutMs: { env: "LATCHKEY_IDLE_TIMEOUT_MS", flag: "idle-timeout-ms" },
  shutdownGraceMs: { env: "LATCHKEY_SHUTDOWN_GRACE_MS", flag: "shutdown-grace-ms" },
  maxSessionMemoryMb: { env: "LATCHKEY_MAX_SESSION_MEMORY_MB", flag: "max-session-memory-mb" },
  handshakeTimeoutMs: { env: "LATCHKEY_HANDSHAKE_TIMEOUT_MS", flag: "handshake-timeout-ms" },
  keepaliveTimeMs: { env: "LATCHKEY_KEEPALIVE_TIME_MS", flag: "keepalive-time-ms" },
  keepaliveTimeoutMs: { env: "LATCHKEY_KEEPALIVE_TIMEOUT_MS", flag: "keepalive-timeout-ms" },
  readinessPollMs: { env: "LATCHKEY_READINESS_POLL_MS", flag: "readiness-poll-ms" },
  grpcLean: { env: "LATCHKEY_GRPC_LEAN", flag: "grpc-lean" },
  redisCommandTimeoutMs: {
    env: "LATCHKEY_REDIS_COMMAND_TIMEOUT_MS",
    flag: "redis-command-timeout-ms",
  },
  redisConnectTimeoutMs: {
    env: "LATCHKEY_REDIS_CONNECT_TIMEOUT_MS",
    flag: "redis-connect-timeout-ms",
  },
  redisKeyPrefix: { env: "LATCHKEY_REDIS_KEY_PREFIX", flag: "redis-key-prefix" },
  sweepIntervalMs: { env: "LATCHKEY_SWEEP_INTERVAL_MS", flag: "sweep-interval-ms" },
  sweepBatch: { env: "LATCHKEY_SWEEP_BATCH", flag: "sweep-batch" },
  watchHistoryEntries: { env: "LATCHKEY_WATCH_HISTORY", flag: "watch-history" },
  watchHistoryMaxAgeMs: {
    env: "LATCHKEY_WATCH_HISTORY_MAX_AGE_MS",
    flag: "watch-history-max-age-ms",
  },
  watchProgressIntervalMs: {
    env: "LATCHKEY_WATCH_PROGRESS_INTERVAL_MS",
    flag: "watch-progress-interval-ms",
  },
  watcherBuffer: { env: "LATCHKEY_WATCHER_BUFFER", flag: "watcher-buffer" },
  lockDriftFactor: { env: "LATCHKEY_LOCK_DRIFT_FACTOR", flag: "lock-drift-factor" },
  lockNodeTimeoutMs: { env: "LATCHKEY_LOCK_NODE_TIMEOUT_MS", flag: "lock-node-timeout-ms" },
  maxLockTtlMs: { env: "LATCHKEY_MAX_LOCK_TTL_MS", flag: "max-lock-ttl-ms" },
  lockUnsafeImmediateVote: {
    env: "LATCHKEY_LOCK_UNSAFE_IMMEDIATE_VOTE",
    flag: "lock-unsafe-immediate-vote",
  },
  snapshotCompressAboveBytes: {
    env: "LATCHKEY_SNAPSHOT_COMPRESS_ABOVE_BYTES",
    flag: "snapshot-compress-above-bytes",
  },
  snapshotMaxCheckpoints: {
    env: "LATCHKEY_SNAPSHOT_MAX_CHECKPOINTS",
    flag: "snapshot-max-checkpoints",
  },
  tenantRateLimit: { env: "LATCHKEY_TENANT_RATE_LIMIT", flag: "tenant-rate-limit" },
  tenantRateBurst: { env: "LATCHKEY_TENANT_RATE_BURST", flag: "tenant-rate-burst" },
  resumeTokenTtlMs: { env: "LATCHKEY_RESUME_TOKEN_TTL_MS", flag: "resume-token-ttl-ms" },
  idempotencyTtlMs: {
    env: "LATCHKEY_SNAPSHOT_IDEMPOTENCY_TTL_MS",
    flag: "snapshot-idempotency-ttl-ms",
  },
} as const;

type SettingName = keyof typeof SETTINGS;

/** A configuration error: the message names the variable and what is wrong. */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

/** Describes every setting, for `--help` and the README table. */
export function describeSettings(): { name: SettingName; env: string; flag: string }[] {
  return Object.entries(SETTINGS).map(([name, s]) => ({
    name: name as SettingName,
    env: s.env,
    flag: `--${s.flag}`,
  }));
}

export function loadConfig(
  env: Readonly<Record<string, string | undefined>> = process.env,
  argv: readonly string[] = process.argv.slice(2),
): Config {
  const options = Object.fromEntries(
    Object.values(SETTINGS).map((s) => [s.flag, { type: "string" as const }]),
  );
  let flags: Record<string, string | undefined>;
  try {
    flags = parseArgs({ args: [...argv], options, strict: true, allowPositionals: false })
      .values as Record<string, string | undefined>;
  } catch (error) {
    throw new ConfigError((error as Error).message);
  }

  const raw = (name: SettingName): string | undefined => {
    const s = SETTINGS[name];
    const value = flags[s.flag] ?? env[s.env];
    return value === undefined || value === "" ? undefined : value;
  };
  const label = (name: SettingName) => `${SETTINGS[name].env} (--${SETTINGS[name].flag})`;
  const int = (
    name: SettingName,
    fallback: number,
    min: number,
    max = Number.MAX_SAFE_INTEGER,
  ): number => {
    const text = raw(name);
    if (text === undefined) return fallback;
    const value = Number(text);
    if (!Number.isSafeInteger(value) || value < min || value > max) {
      throw new ConfigError(
        `${label(name)} must be an integer in [${min}, ${max}], got ${JSON.stringify(text)}`,
      );
    }
    return value;
  };
  const number = (name: SettingName, fallback: number, min: number, max: number): number => {
    const text = raw(name);
    if (text === undefined) return fallback;
    const value = Number(text);
    if (!Number.isFinite(value) || value < min || value > max) {
      throw new ConfigError(
        `${label(name)} must be a number in [${min}, ${max}], got ${JSON.stringify(text)}`,
      );
    }
    return value;
  };
  const redisUrlOf = (name: SettingName, text: string): string => {
    let url: URL;
    try {
      url = new URL(text);
    } catch {
      throw new ConfigError(`${label(name)}: ${JSON.stringify(text)} is not a URL`);
    }
    if (url.protocol !== "redis:" && url.protocol !== "rediss:") {
      throw new ConfigError(
        `${label(name)}: ${JSON.stringify(text)} must be a redis:// or rediss:// URL`,
      );
    }
    return text;
  };

  const bool = (name: SettingName, fallback: boolean): boolean => {
    const text = raw(name);
    if (text === undefined) return fallback;
    if (/^(true|1|yes|on)$/i.test(text)) return true;
    if (/^(false|0|no|off)$/i.test(text)) return false;
    throw new ConfigError(`${label(name)} must be true or false, got ${JSON.stringify(text)}`);
  };

  const logLevels: LogLevel[] = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];
  const logLevel = (raw("logLevel") ?? "info") as LogLevel;
  if (!logLevels.includes(logLevel)) {
    throw new ConfigError(`${label("logLevel")} must be one of ${logLevels.join(", ")}`);
  }

  const redisText = raw("redisUrl");
  const redisUrl = redisText === undefined ? undefined : redisUrlOf("redisUrl", redisText);
  const lockNodes = (raw("lockNodes") ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "")
    .map((s) => redisUrlOf("lockNodes", s));

  const corsOrigins = (raw("corsOrigins") ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
  const isOrigin = (text: string): boolean => {
    try {
      const url = new URL(text);
      // Exactly an origin, as browsers send it: scheme and host (and port), lower case.
      return (
        (url.protocol === "https:" || url.protocol === "http:") &&
        url.origin === text &&
        !text.includes("*")
      );
    } catch {
      return false;
    }
  };
  for (const origin of corsOrigins) {
    if (origin !== "*" && !isOrigin(origin)) {
      throw new ConfigError(
        `${label("corsOrigins")}: ${JSON.stringify(origin)} must be "*" or an exact origin such as https://app.example.com (lower-case scheme and host, an optional port, no path, no wildcard)`,
      );
    }
  }

  const tlsCert = raw("tlsCert");
  const tlsKey = raw("tlsKey");
  const tlsCa = raw("tlsCa");
  if ((tlsCert === undefined) !== (tlsKey === undefined)) {
    throw new ConfigError(`${label("tlsCert")} and ${label("tlsKey")} must be set together`);
  }
  if (tlsCa !== undefined && tlsCert === undefined) {
    throw new ConfigError(`${label("tlsCa")} needs ${label("tlsCert")} and ${label("tlsKey")}`);
  }

  const minTtlMs = int("minTtlMs", DEFAULT_LIMITS.minTtlMs, 1);
  const maxTtlMs = int("maxTtlMs", DEFAULT_LIMITS.maxTtlMs, minTtlMs);
  const maxKeyBytes = int("maxKeyBytes", DEFAULT_LIMITS.maxKeyBytes, 16, 64 * 1024);
  const maxValueBytes = int("maxValueBytes", DEFAULT_LIMITS.maxValueBytes, 1, 512 * 1024 * 1024);
  const maxStateBytes = int("maxStateBytes", DEFAULT_LIMITS.maxStateBytes, 1, 512 * 1024 * 1024);
  const maxRequestBytes = int("maxRequestBytes", 32 * 1024 * 1024, 1024, 1024 * 1024 * 1024);
  if (maxRequestBytes < Math.max(maxValueBytes, maxStateBytes)) {
    throw new ConfigError(
      `${label("maxRequestBytes")} must be at least the value and snapshot state limits (${Math.max(maxValueBytes, maxStateBytes)})`,
    );
  }
  // Deadlines become Node timers, which hold at most 2^31-1 ms (about 24.8 days).
  const defaultDeadlineMs = int("defaultDeadlineMs", 30_000, 1, MAX_TIMER_MS);
  const callsPerSecond = number("tenantRateLimit", 0, 0, 10_000_000);

  const config: Config = {
    host: raw("host") ?? "127.0.0.1",
    port: int("port", 7411, 0, 65535),
    adminHost: raw("adminHost") ?? raw("host") ?? "127.0.0.1",
    adminPort: int("adminPort", 7412, 0, 65535),
    redisUrl,
    lockNodes,
    authFile: raw("authFile"),
    corsOrigins,
    tls:
      tlsCert !== undefined && tlsKey !== undefined
        ? { cert: tlsCert, key: tlsKey, ca: tlsCa }
        : undefined,
    logLevel,
    limits: {
      maxKeyBytes,
      maxValueBytes,
      maxStateBytes,
      maxBatchKeys: int("maxBatchKeys", DEFAULT_LIMITS.maxBatchKeys, 1, 100_000),
      maxRangePage: int("maxRangePage", DEFAULT_LIMITS.maxRangePage, 1, 1_000_000),
      maxTxnOps: int("maxTxnOps", DEFAULT_LIMITS.maxTxnOps, 1, 10_000),
      minTtlMs,
      maxTtlMs,
    },
    server: {
      maxRequestBytes,
      defaultDeadlineMs,
      maxDeadlineMs: int("maxDeadlineMs", 300_000, defaultDeadlineMs, MAX_TIMER_MS),
      maxConcurrentStreams: int("maxConcurrentStreams", 1000, 1, 1_000_000),
      maxHeaderListBytes: int("maxHeaderListBytes", 16 * 1024, 1024, 1024 * 1024),
      maxHeaderListPairs: 256,
      maxSessionMemoryMb: int("maxSessionMemoryMb", 64, 1, 4096),
      idleTimeoutMs: int("idleTimeoutMs", 300_000, 1000),
      handshakeTimeoutMs: int("handshakeTimeoutMs", 10_000, 100, 600_000),
      keepaliveTimeMs: int("keepaliveTimeMs", 120_000, 0),
      keepaliveTimeoutMs: int("keepaliveTimeoutMs", 20_000, 100),
      readinessPollMs: int("readinessPollMs", 1_000, 10, 600_000),
      grpcLean: bool("grpcLean", true),
      shutdownGraceMs: int("shutdownGraceMs", 10_000, 0),
    },
    redis: {
      commandTimeoutMs: int("redisCommandTimeoutMs", 2_000, 10),
      connectTimeoutMs: int("redisConnectTimeoutMs", 1_000, 10),
      keyPrefix: raw("redisKeyPrefix") ?? "lk",
    },
    expiry: {
      sweepIntervalMs: int("sweepIntervalMs", 50, 1, 60_000),
      sweepBatch: int("sweepBatch", 500, 1, 100_000),
    },
    watch: {
      historyEntries: int("watchHistoryEntries", 100_000, 1),
      historyMaxAgeMs: int("watchHistoryMaxAgeMs", 24 * 3600 * 1000, 1000),
      progressIntervalMs: int("watchProgressIntervalMs", 10_000, 10),
      watcherBuffer: int("watcherBuffer", 1024, 1),
    },
    lock: {
      driftFactor: number("lockDriftFactor", 0.01, 0, 0.5),
      nodeTimeoutMs: int("lockNodeTimeoutMs", 50, 1, 10_000),
      maxLockTtlMs: int("maxLockTtlMs", 300_000, minTtlMs, maxTtlMs),
      unsafeImmediateVote: bool("lockUnsafeImmediateVote", false),
    },
    snapshot: {
      compressAboveBytes: int("snapshotCompressAboveBytes", 16 * 1024, 0),
      maxCheckpoints: int("snapshotMaxCheckpoints", 64, 1, 10_000),
      resumeTokenTtlMs: int("resumeTokenTtlMs", 30 * 24 * 3600 * 1000, 1000),
      idempotencyTtlMs: int("idempotencyTtlMs", 24 * 3600 * 1000, 1000),
    },
    rateLimit: {
      callsPerSecond,
      burst: number("tenantRateBurst", Math.max(1, callsPerSecond), 1, 10_000_000),
    },
  };
  return deepFreeze(config);
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === "object") {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}
