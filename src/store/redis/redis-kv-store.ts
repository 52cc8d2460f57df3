/**
 * The Redis backend of KvStore and ChangeFeed, with the observable semantics
 * of MemoryKvStore. Every call is one Lua script (scripts/*.lua): value,
 * metadata, TTL, lease membership, revision, indexes and the changefeed
 * entry change together, on Redis's clock (TIME), in one round trip. The key
 * layout is in keys.ts; the client, scripts and epoch check are shared with
 * the backend's other stores through RedisState (redis-state.ts), which
 * this store creates and whose lifecycle it owns.
 */
import type { Redis } from "ioredis";
import type { Logger } from "pino";
import type { RedisSettings, WatchSettings } from "../../config.js";
import type {
  FeedEntry,
  KeyValue,
  RangeQuery,
  RangeResult,
  Tenant,
  TxnOp,
  TxnOpResult,
  TxnOutcome,
  TxnPlan,
} from "../../core/model.js";
import type { ChangeFeed, KvStore, SweepResult } from "../../core/ports.js";
import { BlockingPool } from "./blocking-pool.js";
import { Coalescer } from "./coalescer.js";
import { decodeFeedEntry } from "./feed-codec.js";
import { expiryKeys } from "./keys.js";
import { toStoreError } from "./redis-client.js";
import { decoding, RedisState } from "./redis-state.js";

export { StartupError } from "./redis-state.js";

type Arg = string | Buffer;

/** Gets of one tenant coalesced into one script call at most (each up to 1000 keys). */
const MAX_COALESCED_READS = 64;
/** Writes of one tenant coalesced into one script call at most. */
const MAX_COALESCED_WRITES = 64;
/** A write whose arguments exceed this goes alone, so no batch holds Redis for long. */
const MAX_COALESCED_WRITE_BYTES = 64 * 1024;

function argsBytes(args: readonly Arg[]): number {
  let n = 0;
  for (const a of args) n += typeof a === "string" ? a.length : a.byteLength;
  return n;
}

/** How long an aborted blocking read may take to return after CLIENT UNBLOCK. */
const ABORT_GRACE_MS = 100;

const OPERATORS = { equal: "=", not_equal: "!", greater: ">", less: "<" } as const;
const TARGETS = {
  version: "v",
  mod_revision: "m",
  create_revision: "c",
  lease_id: "l",
  value: "b",
  exists: "e",
} as const;

const flag = (b: boolean): string => (b ? "1" : "0");
const asBuffer = (u: Uint8Array): Buffer => Buffer.from(u.buffer, u.byteOffset, u.byteLength);

/**
 * KvStore and ChangeFeed on one Redis (standalone, or a Cluster: every script
 * stays in one tenant's slot). Construct with the Redis and watch settings,
 * a logger and the URL; `start()` connects and checks the server. `state`
 * is handed to the backend's other stores (RedisLeaseStore).
 */
export class RedisKvStore implements KvStore, ChangeFeed {
  readonly state: RedisState;
  private readonly client: Redis;
  private readonly blocking: BlockingPool;
  private readonly writes = new Coalescer<{ plan: TxnPlan; args: Arg[] }, TxnOutcome>(
    (tenant, batch) => this.applyPlans(tenant, batch),
    MAX_COALESCED_WRITES,
  );
  private readonly reads = new Coalescer<
    readonly string[],
    { kvs: (KeyValue | undefined)[]; revision: number }
  >((tenant, requests) => this.readMany(tenant, requests), MAX_COALESCED_READS);

  constructor(settings: RedisSettings, watch: WatchSettings, logger: Logger, url: string) {
    this.state = new RedisState(settings, watch, logger, url);
    this.client = this.state.client;
    this.blocking = new BlockingPool(settings, url, logger);
  }

  start(): Promise<void> {
    return this.state.start();
  }

  async close(): Promise<void> {
    this.blocking.close();
    await this.state.close();
  }

  ready(): Promise<boolean> {
    return this.state.ready();
  }

  onExpiryScheduled(listener: (tenant: Tenant, expireAt: number) => void): void {
    this.state.onExpiryScheduled(listener);
  }

  tenants(): Promise<Tenant[]> {
    return this.state.tenants();
  }

  get(
    tenant: Tenant,
    keys: readonly string[],
  ): Promise<{ kvs: (KeyValue | undefined)[]; revision: number }> {
    return this.reads.add(tenant, keys);
  }

  /**
   * Reads every key the gets of one turn asked for, in one script call at one
   * point in time (each get still sees every write acknowledged before it
   * arrived: the call goes out after all of them).
   */
  private async readMany(
    tenant: Tenant,
    requests: (readonly string[])[],
  ): Promise<{ kvs: (KeyValue | undefined)[]; revision: number }[]> {
    const keys = requests.flat();
    const { reply, floor } = await this.state.run(tenant, (k, epoch) =>
      this.client.kvGetBuffer(k.meta, k.leaseExp, epoch, k.record, ...keys),
    );
    return this.state.decoded(tenant, floor, () => {
      const [revision, raws] = reply as [number, (unknown[] | null)[]];
      const kvs = raws.map((raw) => (raw === null ? undefined : decodeKv(raw)));
      let at = 0;
      return requests.map((request) => {
        const slice = kvs.slice(at, at + request.length);
        at += request.length;
        return { kvs: slice, revision };
      });
    });
  }

  async range(tenant: Tenant, query: RangeQuery): Promise<RangeResult & { revision: number }> {
    const { reply, floor } = await this.state.run(tenant, (k, epoch) =>
      this.client.kvRangeBuffer(
        k.meta,
        k.idx,
        k.exp,
        k.leaseExp,
        epoch,
        k.record,
        k.lease,
        ...queryArgs(query),
      ),
    );
    return this.state.decoded(tenant, floor, () => {
      const [revision, count, more, kvs] = reply as [number, number, number, unknown[][]];
      return { revision, count, more: more === 1, kvs: kvs.map(decodeKv) };
    });
  }

  async txn(tenant: Tenant, plan: TxnPlan): Promise<TxnOutcome> {
    const args = planArgs(plan);
    // Large writes go alone: a batch must not hold Redis for long.
    const outcome =
      argsBytes(args) > MAX_COALESCED_WRITE_BYTES
        ? (await this.applyPlans(tenant, [{ plan, args }]))[0]!
        : await this.writes.add(tenant, { plan, args });
    if (outcome.kind === "done") {
      for (const result of outcome.results) {
        // Keys on a lease expire with it (scheduled when the lease is granted or renewed).
        if (result.kind !== "put" || result.kv.leaseId !== 0) continue;
        if (result.kv.expireAt !== undefined) this.state.scheduled(tenant, result.kv.expireAt);
      }
    }
    return outcome;
  }

  /** Applies plans in order in one script call, each atomic with its own revision. */
  private async applyPlans(
    tenant: Tenant,
    batch: { plan: TxnPlan; args: Arg[] }[],
  ): Promise<TxnOutcome[]> {
    const flat: Arg[] = [String(batch.length)];
    for (const { args } of batch) flat.push(String(args.length), ...args);
    const { reply, floor } = await this.state.run(tenant, (k, epoch) =>
      this.client.kvTxnBuffer(
        k.meta,
        k.idx,
        k.exp,
        k.feed,
        k.fence,
        k.leaseExp,
        epoch,
        k.record,
        String(this.state.watch.historyEntries),
        k.lease,
        ...flat,
      ),
    );
    return this.state.decoded(tenant, floor, () =>
      (reply as unknown[]).map((one, i) => decodeOutcome(one, batch[i]!.plan)),
    );
  }

  async sweepExpired(tenant: Tenant, limit: number): Promise<SweepResult> {
    const { reply, floor } = await this.state.run(tenant, (k, epoch) =>
      this.client.kvSweep(
        ...expiryKeys(k),
        epoch,
        k.record,
        String(limit),
        String(this.state.watch.historyEntries),
        String(this.state.watch.historyMaxAgeMs),
        k.lease,
        k.lock,
      ),
    );
    return this.state.decoded(tenant, floor, () => {
      const [expired, nextExpireAt, , flat] = reply as [
        number,
        number,
        number,
        (string | Buffer)[],
      ];
      const endedLocks: { name: string; nonce: string }[] = [];
      for (let i = 0; i + 1 < flat.length; i += 2) {
        endedLocks.push({ name: String(flat[i]), nonce: String(flat[i + 1]) });
      }
      return { expired, nextExpireAt: nextExpireAt === 0 ? undefined : nextExpireAt, endedLocks };
    });
  }

  async read(
    tenant: Tenant,
    fromRevision: number,
    limit: number,
  ): Promise<{ entries: FeedEntry[]; oldestRevision: number; revision: number }> {
    const { reply, floor } = await this.state.run(tenant, (k, epoch) =>
      this.client.feedReadBuffer(k.meta, k.feed, epoch, String(fromRevision), String(limit)),
    );
    return this.state.decoded(tenant, floor, () => {
      const [revision, oldestRevision, entries] = reply as [number, number, unknown[]];
      return { revision, oldestRevision, entries: entries.map(decodeFeedEntry) };
    });
  }

  /**
   * Waits (XREAD BLOCK on a dedicated connection) for entries after
   * `afterRevision`. When the block ends empty, one `read` follows: it checks
   * the tenant's epoch (a Redis that came back empty fails DATA_LOSS instead
   * of blocking forever) and picks up entries written meanwhile.
   */
  async tail(
    tenant: Tenant,
    afterRevision: number,
    limit: number,
    blockMs: number,
    signal: AbortSignal,
  ): Promise<FeedEntry[]> {
    this.state.assertUsable();
    if (signal.aborted) return [];
    const keys = this.state.keysOf(tenant);
    let conn: Awaited<ReturnType<BlockingPool["acquire"]>>;
    try {
      conn = await this.blocking.acquire();
    } catch (error) {
      throw toStoreError(error);
    }
    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    let settled = false;
    let broken = false;
    let reply: unknown;
    try {
      const block = Math.max(0, Math.floor(blockMs));
      const id = `${afterRevision}-0`;
      const read =
        block > 0
          ? conn.client.xreadBuffer("COUNT", limit, "BLOCK", block, "STREAMS", keys.feed, id)
          : conn.client.xreadBuffer("COUNT", limit, "STREAMS", keys.feed, id);
      read.then(
        () => {
          settled = true;
        },
        () => {
          settled = true;
        },
      );
      // The connection has no command timeout of its own: a hung Redis fails here.
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error("blocking read timed out")),
          block + this.state.settings.commandTimeoutMs,
        );
      });
      // An abort unblocks the read (CLIENT UNBLOCK, on the main connection); if the
      // unblock overtook the read, the read is abandoned with its connection.
      const aborted = new Promise<null>((resolve) => {
        onAbort = () => {
          void this.client.client("UNBLOCK", conn.id).catch(() => undefined);
          setTimeout(() => resolve(null), ABORT_GRACE_MS).unref();
        };
        signal.addEventListener("abort", onAbort, { once: true });
        if (signal.aborted) onAbort();
      });
      reply = await Promise.race([read, timeout, aborted]);
    } catch (error) {
      broken = true;
      throw toStoreError(error);
    } finally {
      clearTimeout(timer);
      if (onAbort) signal.removeEventListener("abort", onAbort);
      this.blocking.release(conn, broken || !settled);
    }
    if (signal.aborted) return [];
    if (reply === null || reply === undefined) {
      return (await this.read(tenant, afterRevision + 1, limit)).entries;
    }
    return decoding(() => {
      const streams = reply as [Buffer, unknown[]][];
      return (streams[0]?.[1] ?? []).map(decodeFeedEntry);
    });
  }
}

/** Decodes a script kv: [key, value, create, mod, version, lease, expireAt (0 = never)]. */
function decodeKv(raw: unknown[]): KeyValue {
  const [key, value, createRevision, modRevision, version, leaseId, expireAt] = raw as [
    Buffer,
    Buffer,
    number,
    number,
    number,
    number,
    number,
  ];
  return {
    key: key.toString("utf8"),
    value: new Uint8Array(value),
    createRevision,
    modRevision,
    version,
    leaseId,
    expireAt: expireAt === 0 ? undefined : expireAt,
  };
}

function queryArgs(q: RangeQuery): Arg[] {
  return [
    q.range.start,
    flag(q.range.end !== undefined),
    q.range.end ?? "",
    flag(q.after !== undefined),
    q.after ?? "",
    String(q.limit),
    flag(q.keysOnly),
    flag(q.countOnly),
  ];
}

/** The plan as flat arguments (parsed by kv-txn-5.lua). */
function planArgs(plan: TxnPlan): Arg[] {
  const args: Arg[] = [String(plan.fences.length)];
  for (const fence of plan.fences) args.push(fence.lockName, String(fence.token));
  args.push(String(plan.compares.length));
  for (const c of plan.compares) {
    const { target } = c;
    const operand =
      target.kind === "value"
        ? asBuffer(target.value)
        : target.kind === "exists"
          ? flag(target.value)
          : String(target.value);
    args.push(c.key, OPERATORS[c.operator], TARGETS[target.kind], operand);
  }
  for (const ops of [plan.success, plan.failure]) {
    args.push(String(ops.length));
    for (const op of ops) args.push(...opArgs(op));
  }
  return args;
}

function opArgs(op: TxnOp): Arg[] {
  switch (op.kind) {
    case "put":
      return [
        "p",
        op.key,
        asBuffer(op.value),
        op.ttlMs === undefined ? "" : String(op.ttlMs),
        String(op.leaseId),
        flag(op.prevKv),
      ];
    case "delete":
      return ["d", op.key, flag(op.prevKv)];
    case "delete_range":
      return [
        "D",
        op.range.start,
        flag(op.range.end !== undefined),
        op.range.end ?? "",
        flag(op.prevKv),
      ];
    case "get":
      return ["g", op.key];
    case "range":
      return ["r", ...queryArgs(op.query)];
  }
}

function decodeOutcome(reply: unknown, plan: TxnPlan): TxnOutcome {
  const tag = (reply as unknown[])[0];
  switch (tag) {
    case 0: {
      const [, succeeded, revision, raw] = reply as [number, number, number, unknown[][]];
      const ops = succeeded === 1 ? plan.success : plan.failure;
      if (raw.length !== ops.length) throw new Error("txn reply has the wrong number of results");
      return {
        kind: "done",
        succeeded: succeeded === 1,
        revision,
        results: raw.map(decodeResult),
      };
    }
    case 1: {
      const [, lockName, currentToken, revision] = reply as [number, Buffer, number, number];
      return { kind: "fence_stale", lockName: lockName.toString("utf8"), currentToken, revision };
    }
    case 2: {
      const [, leaseId, revision] = reply as [number, number, number];
      return { kind: "lease_not_found", leaseId, revision };
    }
    default:
      throw new Error(`unknown txn reply tag ${String(tag)}`);
  }
}

function decodeResult(raw: unknown[]): TxnOpResult {
  switch (raw[0]) {
    case 1: {
      const [, kv, prev] = raw as [number, unknown[], unknown[] | null];
      return { kind: "put", kv: decodeKv(kv), prevKv: prev === null ? undefined : decodeKv(prev) };
    }
    case 2: {
      const [, deleted, prevs] = raw as [number, number, unknown[][]];
      return { kind: "delete", deleted, prevKvs: prevs.map(decodeKv) };
    }
    case 3: {
      const [, kv] = raw as [number, unknown[] | null];
      return { kind: "get", kv: kv === null ? undefined : decodeKv(kv) };
    }
    case 4: {
      const [, count, more, kvs] = raw as [number, number, number, unknown[][]];
      return { kind: "range", result: { count, more: more === 1, kvs: kvs.map(decodeKv) } };
    }
    default:
      throw new Error(`unknown txn result tag ${String(raw[0])}`);
  }
}
