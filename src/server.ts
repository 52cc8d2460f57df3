/**
 * Composition root: picks the backends from the configuration, builds the
 * domain, wires the API and returns an unstarted server. The only module
 * that names concrete adapters.
 */
import { setMaxListeners } from "node:events";
import { Code } from "@connectrpc/connect";
import type { Logger } from "pino";
import { Registry } from "prom-client";
import { loadAuthenticator, openAuthenticator } from "./api/auth.js";
import { errorWithInfo } from "./api/errors.js";
import { createHealthMonitor } from "./api/health-service.js";
import { createRpcMetrics } from "./api/metrics.js";
import type { PipelineOptions } from "./api/pipeline.js";
import { TenantRateLimiter } from "./api/rate-limit.js";
import { latchkeyServices, operationalServices, registerRoutes, roleOf } from "./api/routes.js";
import type { Config } from "./config.js";
import { Reason } from "./core/errors.js";
import { ExpirySweeper } from "./core/expiry.js";
import { Kv } from "./core/kv.js";
import { Leases } from "./core/leases.js";
import { Locks } from "./core/locks.js";
import type {
  ChangeFeed,
  KvStore,
  LeaseStore,
  LockNodes,
  LockRecords,
  SnapshotStore,
} from "./core/ports.js";
import { Snapshots } from "./core/snapshots.js";
import { Watches } from "./core/watches.js";
import { MemoryLockNodes } from "./lock/memory-lock-nodes.js";
import { RedlockLockNodes } from "./lock/redlock-lock-nodes.js";
import { MemoryKvStore } from "./store/memory/memory-kv-store.js";
import { MemoryLeaseStore } from "./store/memory/memory-lease-store.js";
import { MemorySnapshotStore } from "./store/memory/memory-snapshot-store.js";
import { MemoryTenants } from "./store/memory/memory-tenant.js";
import { RedisKvStore } from "./store/redis/redis-kv-store.js";
import { RedisLeaseStore } from "./store/redis/redis-lease-store.js";
import { RedisSnapshotStore } from "./store/redis/redis-snapshot-store.js";
import { createAdminServer } from "./transport/admin-server.js";
import { createConnectHandler } from "./transport/connect-adapter.js";
import { withCors } from "./transport/cors.js";
import { createLeanGrpc } from "./transport/grpc-lean.js";
import { createApiListener, type RequestHandler } from "./transport/listener.js";
import { WatchHub } from "./watch/watch-hub.js";

export interface LatchkeyServer {
  /** Starts the backends, then listens; resolves with the bound API (and admin) ports. */
  start(): Promise<{ port: number; adminPort: number | undefined }>;
  /** Drains: refuses new calls, ends open ones after the grace period, stops backends. */
  close(): Promise<void>;
}

export function createServer(config: Config, logger: Logger): LatchkeyServer {
  const registry = new Registry();
  const auth = config.authFile ? loadAuthenticator(config.authFile) : openAuthenticator;

  const backend = config.redisUrl
    ? redisBackend(config, config.redisUrl, logger, registry)
    : memoryBackend(config);
  const { store, leaseStore, lockNodes } = backend;
  const kv = new Kv(store, config.limits);
  const snapshots = new Snapshots(backend.snapshotStore, config.limits, config.snapshot);
  const snapshotSweeper = new ExpirySweeper(backend.snapshotStore, {
    intervalMs: config.expiry.sweepIntervalMs,
    batch: config.expiry.sweepBatch,
    onError: (error, suppressed) =>
      logger.warn({ err: error, suppressed }, "snapshot expiry sweep failed"),
  });
  const onLockError = (error: unknown) => logger.warn({ err: error }, "lock node operation failed");
  const sweeper = new ExpirySweeper(store, {
    intervalMs: config.expiry.sweepIntervalMs,
    batch: config.expiry.sweepBatch,
    onError: (error, suppressed) => logger.warn({ err: error, suppressed }, "expiry sweep failed"),
    onLocksEnded: (tenant, ended) => {
      for (const lock of ended) lockNodes.release(tenant, lock.name, lock.nonce).catch(onLockError);
    },
  });

  const pipeline: PipelineOptions = {
    auth,
    logger,
    metrics: createRpcMetrics(registry),
    defaultDeadlineMs: config.server.defaultDeadlineMs,
    maxDeadlineMs: config.server.maxDeadlineMs,
    roleOf,
    ...(config.rateLimit.callsPerSecond > 0
      ? { rateLimiter: new TenantRateLimiter(config.rateLimit) }
      : {}),
  };
  const hub = new WatchHub(store, {
    bufferLimit: config.watch.watcherBuffer,
    readBatch: 1000,
    blockMs: 5000,
    onError: (error, tenant) => logger.warn({ err: error, tenant }, "changefeed read failed"),
  });
  const watches = new Watches(hub, config.limits, config.watch.progressIntervalMs);
  const leases = new Leases(leaseStore, lockNodes, config.limits, onLockError);
  const locks = new Locks(
    lockNodes,
    leaseStore,
    leaseStore,
    hub,
    config.limits,
    config.lock,
    onLockError,
  );
  const latchkey = latchkeyServices({ kv, watches, leases, locks, snapshots }, pipeline);
  const health = createHealthMonitor({
    ready: () => store.ready(),
    services: latchkey.map((s) => s.service.typeName),
    pollMs: config.server.readinessPollMs,
    logger,
    registry,
  });
  const services = [...latchkey, ...operationalServices(latchkey, health, pipeline)];
  // Aborted after the drain's grace period; Connect adds one listener per open call.
  const shutdown = new AbortController();
  setMaxListeners(0, shutdown.signal);
  const handler = createConnectHandler({
    routes: (router) => registerRoutes(router, services),
    maxMessageBytes: config.server.maxRequestBytes,
    shutdownSignal: shutdown.signal,
    maxDeadlineMs: config.server.maxDeadlineMs,
    logger,
  });
  const lean = config.server.grpcLean
    ? createLeanGrpc({
        services,
        maxMessageBytes: config.server.maxRequestBytes,
        maxDeadlineMs: config.server.maxDeadlineMs,
        logger,
        registry,
      })
    : undefined;
  const listener = createApiListener({
    settings: config.server,
    tls: config.tls,
    logger,
    handler: withCors(handler as RequestHandler, config.corsOrigins),
    lean,
  });
  const admin =
    config.adminPort > 0
      ? createAdminServer({ registry, ready: () => health.serving(), logger })
      : undefined;
  let closing: Promise<void> | undefined;

  return {
    async start() {
      await store.start();
      await lockNodes.start();
      sweeper.start();
      snapshotSweeper.start();
      await health.start();
      const port = await listener.listen(config.port, config.host);
      const adminPort = admin ? await admin.listen(config.adminPort, config.adminHost) : undefined;
      logger.info(
        {
          host: config.host,
          port,
          adminPort,
          tls: config.tls !== undefined,
          grpcLean: lean !== undefined,
        },
        "latchkey listening",
      );
      return { port, adminPort };
    },
    close() {
      closing ??= drainAndStop();
      return closing;
    },
  };

  // SIGTERM: NOT_SERVING, end watches at once (UNAVAILABLE SHUTTING_DOWN with
  // their resume revision: they never end by themselves, and their clients
  // should resume on another replica now, not after the grace period), stop
  // accepting, GOAWAY, let calls finish for the grace period, cut the rest
  // with UNAVAILABLE SHUTTING_DOWN, stop backends.
  async function drainAndStop(): Promise<void> {
    health.setDraining();
    hub.close();
    const shuttingDown = errorWithInfo(
      Code.Unavailable,
      Reason.SHUTTING_DOWN,
      "the server is shutting down",
    );
    await listener.drain(config.server.shutdownGraceMs, () => {
      shutdown.abort(shuttingDown);
      lean?.abortAll(shuttingDown);
    });
    health.stop();
    await admin?.close();
    // Backends last: nothing calls them any more.
    sweeper.stop();
    snapshotSweeper.stop();
    locks.close();
    await lockNodes.close();
    await store.close();
  }
}

/** The adapters of one backend: the state store (KV, feed, leases, lock records) and the lock nodes. */
interface Backend {
  readonly store: KvStore & ChangeFeed;
  readonly leaseStore: LeaseStore & LockRecords;
  readonly lockNodes: LockNodes;
  readonly snapshotStore: SnapshotStore;
}

function memoryBackend(config: Config): Backend {
  const tenants = new MemoryTenants({
    maxEntries: config.watch.historyEntries,
    maxAgeMs: config.watch.historyMaxAgeMs,
  });
  const store = new MemoryKvStore(tenants);
  return {
    store,
    leaseStore: new MemoryLeaseStore(tenants, store),
    lockNodes: new MemoryLockNodes(),
    snapshotStore: new MemorySnapshotStore(tenants),
  };
}

function redisBackend(config: Config, url: string, logger: Logger, registry: Registry): Backend {
  const store = new RedisKvStore(config.redis, config.watch, logger, url);
  // Redlock over the configured lock nodes, or the state Redis as the one node.
  const nodes = config.lockNodes.length > 0 ? config.lockNodes : [url];
  const lockNodes = new RedlockLockNodes(
    nodes,
    config.lock,
    config.redis,
    logger,
    registry,
    (node, runId, record) => store.state.lockNodeRunId(node, runId, record),
  );
  const snapshotStore = new RedisSnapshotStore(store.state);
  return { store, leaseStore: new RedisLeaseStore(store.state), lockNodes, snapshotStore };
}
