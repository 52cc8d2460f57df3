/**
 * The lock benchmark's clients, one interface for the three subjects:
 *
 *  - latchkey: LockService Acquire (ttl, wait_timeout) / Release (name,
 *    fencing token), over @grpc/grpc-js with @grpc/proto-loader reading
 *    proto/latchkey/v1/lock.proto;
 *  - etcd: v3lockpb.Lock Lock (name, lease) / Unlock (key), over the same
 *    grpc-js + proto-loader code reading bench/proto/etcd/ (one lease per
 *    worker, granted with etcdserverpb.Lease/LeaseGrant before each run);
 *  - redlock: the `@sesamecare-oss/redlock` package in this process, straight
 *    to the lock nodes (no service in between), as a reference.
 *
 * Calls fail by throwing; `acquire` answers undefined when the lock was not
 * obtained in time (Latchkey's acquired = false after wait_timeout, redlock's
 * retries exhausted; etcd has no such answer and ends in DEADLINE_EXCEEDED).
 */
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { ExecutionError, Redlock, type Lock as RedlockLock } from "@sesamecare-oss/redlock";
import { Redis } from "ioredis";
import { errorInfoReason } from "./lock-stats.js";

export type SubjectKind = "latchkey" | "etcd" | "redlock";

export interface ClientTarget {
  readonly kind: SubjectKind;
  /** host:port of the gRPC server (latchkey, etcd). */
  readonly address?: string | undefined;
  /** redis:// URLs of the lock nodes (redlock). */
  readonly nodes?: readonly string[] | undefined;
  /** How long a grant lasts unless released (Latchkey ttl, redlock duration), ms. */
  readonly ttlMs: number;
  /** How long a blocked acquire may wait (Latchkey wait_timeout, redlock's retries), ms. */
  readonly waitMs: number;
  /** Redlock retry settings (contended acquires). */
  readonly redlockRetryDelayMs: number;
  readonly redlockRetryJitterMs: number;
}

/** A lock held by one worker. */
export interface Held {
  /** Fencing token (Latchkey), 0 otherwise. */
  readonly token: number;
  /** Releases it; resolves with a problem ("NOT_FOUND", ...) or undefined when released. */
  release(): Promise<string | undefined>;
}

export interface LockClient {
  /** Per-run preparation (etcd: one lease per worker). */
  prepare(workers: readonly number[], leaseTtlSeconds: number): Promise<void>;
  /** Takes `name` for `worker`, waiting if it is held; undefined = not obtained in time. */
  acquire(worker: number, name: string): Promise<Held | undefined>;
  close(): Promise<void>;
}

const PROTO_ROOT = fileURLToPath(new URL("../../proto/", import.meta.url));
const ETCD_PROTO_ROOT = fileURLToPath(new URL("../proto/etcd/", import.meta.url));
/** Extra time over the wait a call may take before the client gives up. */
const DEADLINE_SLACK_MS = 5000;

type UnaryMethod = (
  request: unknown,
  metadata: grpc.Metadata,
  options: grpc.CallOptions,
  callback: (error: grpc.ServiceError | null, response: unknown) => void,
) => grpc.ClientUnaryCall;

type GrpcService = grpc.Client & Record<string, UnaryMethod>;
type ServiceCtor = new (
  address: string,
  credentials: grpc.ChannelCredentials,
  options?: grpc.ChannelOptions,
) => GrpcService;

function loadService(root: string, files: string[], path: string): ServiceCtor {
  const definition = protoLoader.loadSync(files, {
    includeDirs: [root],
    // Field names as in the .proto (fencing_token, wait_timeout, TTL, ID).
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
  });
  let node: unknown = grpc.loadPackageDefinition(definition);
  for (const part of path.split(".")) node = (node as Record<string, unknown>)[part];
  if (typeof node !== "function") throw new Error(`${path} not found in ${files.join(", ")}`);
  return node as ServiceCtor;
}

/** A grpc-js unary call as a promise (same code for every gRPC subject). */
function unary<T>(client: GrpcService, method: string, request: object, timeoutMs: number) {
  return new Promise<T>((resolve, reject) => {
    client[method]!(
      request,
      new grpc.Metadata(),
      { deadline: Date.now() + timeoutMs },
      (error, response) => (error ? reject(error) : resolve(response as T)),
    );
  });
}

/** "UNAVAILABLE NO_QUORUM", "DEADLINE_EXCEEDED", "Error: ...": how an error is counted. */
export function classifyError(error: unknown): string {
  const e = error as Partial<grpc.ServiceError> & { name?: string; message?: string };
  if (typeof e?.code === "number" && e.metadata) {
    const bin = e.metadata.get("grpc-status-details-bin")[0];
    const reason = bin instanceof Buffer ? errorInfoReason(bin) : undefined;
    return `${grpc.status[e.code] ?? e.code}${reason ? ` ${reason}` : ""}`;
  }
  return `${e?.name ?? "Error"}: ${String(e?.message ?? error).slice(0, 60)}`;
}

const CHANNEL_OPTIONS: grpc.ChannelOptions = {
  // One HTTP/2 connection per client process, as many streams as workers.
  "grpc.use_local_subchannel_pool": 1,
};

interface Duration {
  seconds: string;
  nanos: number;
}
const duration = (ms: number): Duration => ({
  seconds: String(Math.floor(ms / 1000)),
  nanos: (ms % 1000) * 1e6,
});

class LatchkeyClient implements LockClient {
  private readonly client: GrpcService;
  private readonly ttl: Duration;
  private readonly wait: Duration;

  constructor(private readonly target: ClientTarget) {
    const Ctor = loadService(PROTO_ROOT, ["latchkey/v1/lock.proto"], "latchkey.v1.LockService");
    this.client = new Ctor(target.address!, grpc.credentials.createInsecure(), CHANNEL_OPTIONS);
    this.ttl = duration(target.ttlMs);
    this.wait = duration(target.waitMs);
  }

  async prepare(): Promise<void> {}

  async acquire(worker: number, name: string): Promise<Held | undefined> {
    const res = await unary<{ acquired: boolean; lock: { fencing_token: string } | null }>(
      this.client,
      "Acquire",
      { name, owner: `bench-${process.pid}-${worker}`, ttl: this.ttl, wait_timeout: this.wait },
      this.target.waitMs + DEADLINE_SLACK_MS,
    );
    if (!res.acquired || !res.lock) return undefined;
    const fencing = res.lock.fencing_token;
    return {
      token: Number(fencing),
      release: async () => {
        const out = await unary<{ status: string }>(
          this.client,
          "Release",
          { name, fencing_token: fencing },
          DEADLINE_SLACK_MS,
        );
        return out.status === "RELEASED" ? undefined : out.status;
      },
    };
  }

  async close(): Promise<void> {
    this.client.close();
  }
}

class EtcdClient implements LockClient {
  private readonly locks: GrpcService;
  private readonly leases: GrpcService;
  private readonly leaseOf = new Map<number, string>();

  constructor(private readonly target: ClientTarget) {
    const creds = grpc.credentials.createInsecure();
    const Lock = loadService(ETCD_PROTO_ROOT, ["v3lockpb.proto"], "v3lockpb.Lock");
    const Lease = loadService(ETCD_PROTO_ROOT, ["etcdserverpb.proto"], "etcdserverpb.Lease");
    this.locks = new Lock(target.address!, creds, CHANNEL_OPTIONS);
    // Lease grants go over their own connection, outside the measured calls.
    this.leases = new Lease(target.address!, creds, CHANNEL_OPTIONS);
  }

  async prepare(workers: readonly number[], leaseTtlSeconds: number): Promise<void> {
    await Promise.all(
      workers.map(async (w) => {
        const res = await unary<{ ID: string; error: string }>(
          this.leases,
          "LeaseGrant",
          { TTL: String(leaseTtlSeconds), ID: "0" },
          10_000,
        );
        if (res.error || res.ID === "0") throw new Error(`etcd LeaseGrant: ${res.error}`);
        this.leaseOf.set(w, res.ID);
      }),
    );
  }

  async acquire(worker: number, name: string): Promise<Held | undefined> {
    const lease = this.leaseOf.get(worker);
    if (lease === undefined) throw new Error(`worker ${worker} has no lease`);
    const res = await unary<{ key: Buffer }>(
      this.locks,
      "Lock",
      { name: Buffer.from(name), lease },
      this.target.waitMs + DEADLINE_SLACK_MS,
    );
    return {
      token: 0,
      release: async () => {
        await unary(this.locks, "Unlock", { key: res.key }, DEADLINE_SLACK_MS);
        return undefined;
      },
    };
  }

  async close(): Promise<void> {
    this.locks.close();
    this.leases.close();
  }
}

class RedlockClient implements LockClient {
  private readonly redis: Redis[];
  private readonly redlock: Redlock;

  constructor(private readonly target: ClientTarget) {
    // No retries per command (a dead node fails the vote instead of stalling it).
    this.redis = (target.nodes ?? []).map((url) => {
      const r = new Redis(url, {
        maxRetriesPerRequest: 0,
        connectTimeout: 500,
        retryStrategy: () => 100,
      });
      r.on("error", () => {});
      return r;
    });
    this.redlock = new Redlock(this.redis, {
      driftFactor: 0.01,
      retryCount: Math.ceil(target.waitMs / target.redlockRetryDelayMs),
      retryDelay: target.redlockRetryDelayMs,
      retryJitter: target.redlockRetryJitterMs,
      automaticExtensionThreshold: 500,
    });
    this.redlock.on("error", () => {});
  }

  async prepare(): Promise<void> {
    await Promise.all(this.redis.map((r) => r.ping()));
  }

  async acquire(_worker: number, name: string): Promise<Held | undefined> {
    let lock: RedlockLock;
    try {
      lock = await this.redlock.acquire([`bench:redlock:${name}`], this.target.ttlMs);
    } catch (error) {
      // Retries exhausted: the redlock counterpart of "not acquired in time".
      if (error instanceof ExecutionError) return undefined;
      throw error;
    }
    return {
      token: 0,
      release: async () => {
        await lock.release();
        return undefined;
      },
    };
  }

  async close(): Promise<void> {
    await this.redlock.quit().catch(() => {});
  }
}

export function createLockClient(target: ClientTarget): LockClient {
  switch (target.kind) {
    case "latchkey":
      return new LatchkeyClient(target);
    case "etcd":
      return new EtcdClient(target);
    case "redlock":
      return new RedlockClient(target);
  }
}
