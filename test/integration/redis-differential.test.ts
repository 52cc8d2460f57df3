/**
 * Differential test: random sequences of plans, reads, range reads, leases
 * (grant, renew, revoke, read, list, expiry with attached keys) and lock
 * records (grants minting fencing tokens, fenced writes, release, extend,
 * read, list, expiry) run against the memory backend (the reference
 * semantics) and the Redis backend; every outcome, every read and the whole
 * changefeed must be equal.
 *
 * The stores' clocks differ (Date.now() and Redis TIME, a few ms apart), so
 * nothing here expires by waiting: TTLs are long, and an "age" step moves a
 * key, lease or lock record to the same past expiry in both stores (in
 * memory through MemoryTenant, in Redis by writing the expiry where the
 * scripts keep it). Expiry times the stores compute from their own clocks
 * (now + TTL) compare as "future"; given and aged ones compare exactly.
 */
import fc from "fast-check";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type {
  Compare,
  FeedEntry,
  KeyValue,
  RangeQuery,
  TxnOp,
  TxnPlan,
} from "../../src/core/model.js";
import { MemoryKvStore } from "../../src/store/memory/memory-kv-store.js";
import { MemoryLeaseStore } from "../../src/store/memory/memory-lease-store.js";
import { MemoryTenants } from "../../src/store/memory/memory-tenant.js";
import { leaseMember, lockKey, recordKey, tenantKeys } from "../../src/store/redis/keys.js";
import type { RedisKvStore } from "../../src/store/redis/redis-kv-store.js";
import { RedisLeaseStore } from "../../src/store/redis/redis-lease-store.js";
import { rawClient, startStore } from "../support/redis-kv.js";

/** Keys chosen to exercise bytewise order: ASCII, a prefix family, U+E000 and U+1F600. */
const KEYS = ["a", "a/x", "a/y", "b", "é", "\uE000", "\u{1F600}", "z"];
const HISTORY = 50;
/** Lease ids: 9 and 10 sort differently as text and as numbers. */
const LEASES = [7, 9, 10];
const LOCKS = ["l1", "l1/x", "l2", "\u{1F600}"];
/** Given times: acquire, far-future expiry (a lock TTL), past expiries. */
const ACQUIRE_AT = 500;
const FUTURE = Date.now() + 3_600_000;
/** Expiries in [CLOCK_TIMES, FUTURE) were computed by a store's clock (now + TTL). */
const CLOCK_TIMES = 1_000_000_000_000;

const key = fc.constantFrom(...KEYS);
const bound = fc.constantFrom("", ...KEYS, "a/", "a0", "\uFFFF");
/** Few distinct values (so value compares hit equal, less and greater), binary included. */
const value = fc.oneof(
  fc.constantFrom(
    new Uint8Array([]),
    new Uint8Array([0]),
    new Uint8Array([1]),
    new Uint8Array([1, 0]),
    new Uint8Array([0xff, 0xfe]),
  ),
  fc.uint8Array({ maxLength: 300 }),
);

const query: fc.Arbitrary<RangeQuery> = fc
  .record({
    start: bound,
    end: fc.option(bound, { nil: undefined }),
    after: fc.option(key, { nil: undefined }),
    limit: fc.integer({ min: 1, max: 4 }),
    keysOnly: fc.boolean(),
    countOnly: fc.boolean(),
  })
  .map(({ start, end, after, ...rest }) => {
    // The domain only sends a cursor inside the range (kv.ts checks it).
    const utf8 = (s: string) => Buffer.from(s, "utf8");
    const inside =
      after !== undefined &&
      Buffer.compare(utf8(after), utf8(start)) >= 0 &&
      (end === undefined || Buffer.compare(utf8(after), utf8(end)) < 0);
    return { range: { start, end }, after: inside ? after : undefined, ...rest };
  });

/** A TTL or a lease, never both (the domain refuses both). */
const expiry = fc.oneof(
  fc.record({ ttlMs: fc.constantFrom(undefined, 600_000), leaseId: fc.constant(0) }),
  fc.record({ ttlMs: fc.constant(undefined), leaseId: fc.constantFrom(...LEASES) }),
);

const op: fc.Arbitrary<TxnOp> = fc.oneof(
  fc
    .record({ key, value, expiry, prevKv: fc.boolean() })
    .map(({ expiry: e, ...rest }) => ({ kind: "put" as const, ...rest, ...e })),
  fc.record({ kind: fc.constant("delete" as const), key, prevKv: fc.boolean() }),
  fc.record({
    kind: fc.constant("delete_range" as const),
    range: fc.record({ start: bound, end: fc.option(bound, { nil: undefined }) }),
    prevKv: fc.boolean(),
  }),
  fc.record({ kind: fc.constant("get" as const), key }),
  fc.record({ kind: fc.constant("range" as const), query }),
);

const compare: fc.Arbitrary<Compare> = fc.record({
  key,
  operator: fc.constantFrom("equal", "not_equal", "greater", "less"),
  target: fc.oneof(
    fc.record({ kind: fc.constant("version" as const), value: fc.integer({ min: 0, max: 3 }) }),
    fc.record({
      kind: fc.constant("mod_revision" as const),
      value: fc.integer({ min: 0, max: 9 }),
    }),
    fc.record({
      kind: fc.constant("create_revision" as const),
      value: fc.integer({ min: 0, max: 9 }),
    }),
    fc.record({ kind: fc.constant("lease_id" as const), value: fc.constantFrom(0, ...LEASES) }),
    fc.record({ kind: fc.constant("value" as const), value }),
    fc.record({ kind: fc.constant("exists" as const), value: fc.boolean() }),
  ),
});

const plan: fc.Arbitrary<TxnPlan> = fc.record({
  fences: fc.array(
    fc.record({ lockName: fc.constantFrom("l1", "l2"), token: fc.integer({ min: 0, max: 6 }) }),
    { maxLength: 1 },
  ),
  compares: fc.array(compare, { maxLength: 2 }),
  success: fc.array(op, { maxLength: 3 }),
  failure: fc.array(op, { maxLength: 2 }),
});

type Step =
  | { kind: "txn"; plan: TxnPlan }
  | { kind: "get"; keys: string[] }
  | { kind: "range"; query: RangeQuery }
  | { kind: "fence"; lockName: string; token: number }
  | { kind: "sweep"; limit: number }
  | { kind: "age_key"; key: string }
  | { kind: "lease_grant"; id: number }
  | { kind: "lease_renew"; id: number }
  | { kind: "lease_revoke"; id: number }
  | { kind: "lease_get"; id: number; withAttached: boolean }
  | { kind: "lease_list" }
  /** "busiest": the live lease with the most keys (resolved when run). */
  | { kind: "age_lease"; id: number | "busiest" }
  | {
      kind: "lock_grant";
      name: string;
      owner: string;
      nodeCounter: number;
      leaseId: number;
      expired: boolean;
    }
  | { kind: "lock_get"; name: string }
  | { kind: "lock_list"; prefix: string }
  | { kind: "lock_release"; name: string; token: number | "current" }
  | { kind: "lock_extend"; name: string; token: number | "current" }
  | { kind: "age_lock"; name: string };

const kvSteps: fc.WeightedArbitrary<Step>[] = [
  { weight: 6, arbitrary: plan.map((p) => ({ kind: "txn" as const, plan: p })) },
  {
    weight: 1,
    arbitrary: fc
      .array(key, { minLength: 1, maxLength: 3 })
      .map((keys) => ({ kind: "get" as const, keys })),
  },
  { weight: 2, arbitrary: query.map((q) => ({ kind: "range" as const, query: q })) },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant("fence" as const),
      lockName: fc.constantFrom("l1", "l2"),
      token: fc.integer({ min: 1, max: 3 }),
    }),
  },
];

const leaseId = fc.constantFrom(...LEASES);
const lockName = fc.constantFrom(...LOCKS);
/** A token, or "current": the token of the name's newest grant (resolved when run). */
const token = fc.oneof(fc.constant("current" as const), fc.integer({ min: 0, max: 7 }));

/** Plain writes, mostly onto leases: keys that leases, sweeps and range deletes then act on. */
const write: fc.Arbitrary<TxnPlan> = fc
  .array(
    fc.oneof(
      {
        weight: 3,
        arbitrary: fc.record({
          kind: fc.constant("put" as const),
          key,
          value: fc.constantFrom(new Uint8Array([1]), new Uint8Array([2, 3])),
          ttlMs: fc.constant(undefined),
          leaseId: fc.constantFrom(...LEASES),
          prevKv: fc.boolean(),
        }),
      },
      {
        weight: 1,
        arbitrary: fc.record({
          kind: fc.constant("put" as const),
          key,
          value: fc.constant(new Uint8Array([4])),
          ttlMs: fc.constantFrom(undefined, 600_000),
          leaseId: fc.constant(0),
          prevKv: fc.boolean(),
        }),
      },
      {
        weight: 1,
        arbitrary: fc.record({ kind: fc.constant("delete" as const), key, prevKv: fc.boolean() }),
      },
      {
        weight: 1,
        arbitrary: fc.record({
          kind: fc.constant("delete_range" as const),
          range: fc.record({
            start: fc.constantFrom("", "a"),
            end: fc.constantFrom(undefined, "b"),
          }),
          prevKv: fc.boolean(),
        }),
      },
    ),
    { minLength: 1, maxLength: 3 },
  )
  .map((success) => ({ fences: [], compares: [], success, failure: [] }));

const leaseAndLockSteps: fc.WeightedArbitrary<Step>[] = [
  ...kvSteps,
  { weight: 8, arbitrary: write.map((p) => ({ kind: "txn" as const, plan: p })) },
  {
    // A range delete alone: lazily expires every stale key of the range first.
    weight: 2,
    arbitrary: fc
      .record({
        kind: fc.constant("delete_range" as const),
        range: fc.record({
          start: fc.constantFrom("", "a/"),
          end: fc.constantFrom(undefined, "b"),
        }),
        prevKv: fc.boolean(),
      })
      .map((op) => ({
        kind: "txn" as const,
        plan: { fences: [], compares: [], success: [op], failure: [] },
      })),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant("sweep" as const),
      limit: fc.integer({ min: 1, max: 4 }),
    }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("age_key" as const), key }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("lease_grant" as const), id: leaseId }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("lease_renew" as const), id: leaseId }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("lease_revoke" as const), id: leaseId }) },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant("lease_get" as const),
      id: leaseId,
      withAttached: fc.boolean(),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ kind: "lease_list" as const }) },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant("age_lease" as const),
      id: fc.oneof(leaseId, fc.constant("busiest" as const)),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant("lock_grant" as const),
      name: lockName,
      owner: fc.constantFrom("a", "b"),
      nodeCounter: fc.integer({ min: 0, max: 5 }),
      leaseId: fc.constantFrom(0, 0, ...LEASES),
      expired: fc.boolean(),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("lock_get" as const), name: lockName }) },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant("lock_list" as const),
      prefix: fc.constantFrom("", "l", "l1", "l1/", "m", "\u{1F600}"),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({ kind: fc.constant("lock_release" as const), name: lockName, token }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant("lock_extend" as const), name: lockName, token }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("age_lock" as const), name: lockName }) },
];

/**
 * Makes outcomes comparable: bytes as hex; store-clock expiries as "future"
 * (given and aged ones stay exact); renewal lock lists sorted (memory lists
 * them in insertion order, Redis in name order; neither order is promised);
 * events' locks as LockInfo (memory's carry the record's nonce, which the
 * feed does not keep).
 */
function normalize(value: unknown, field = ""): unknown {
  if (value instanceof Uint8Array) return Buffer.from(value).toString("hex");
  if (Array.isArray(value)) return value.map((v) => normalize(v));
  if (field === "expireAt" || field === "nextExpireAt") {
    if (value === undefined) return "never";
    return typeof value === "number" && value >= CLOCK_TIMES && value < FUTURE ? "future" : value;
  }
  if (value && typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = normalize(v, k);
    return out;
  }
  return value;
}

function normalizeFeed(feed: { entries: FeedEntry[] }): unknown {
  return normalize({
    ...feed,
    entries: feed.entries.map((entry) => ({
      ...entry,
      events: entry.events.map((event) => {
        if (!event.lock) return event;
        const { name, owner, fencingToken, acquireAt, expireAt, leaseId } = event.lock;
        return { ...event, lock: { name, owner, fencingToken, acquireAt, expireAt, leaseId } };
      }),
    })),
  });
}

const byName = (a: { name: string }, b: { name: string }) => (a.name < b.name ? -1 : 1);

describe("the Redis backend matches the memory backend", () => {
  let redis: RedisKvStore;
  let redisLeases: RedisLeaseStore;
  let raw: Redis;
  const prefix = `d${Date.now().toString(36)}`;
  let run = 0;

  beforeAll(async () => {
    redis = await startStore(inject("redisUrl"), {
      keyPrefix: prefix,
      watch: { historyEntries: HISTORY },
    });
    redisLeases = new RedisLeaseStore(redis.state);
    raw = rawClient(inject("redisUrl"));
  });
  afterAll(async () => {
    await redis?.close();
    await raw?.quit();
  });

  /** Runs `steps` on both backends (a fresh tenant), comparing as it goes. */
  async function compareRun(steps: readonly Step[]): Promise<void> {
    const tenant = `diff-${run++}`;
    const tenants = new MemoryTenants({ maxEntries: HISTORY, maxAgeMs: 3_600_000 });
    const memory = new MemoryKvStore(tenants);
    const memoryLeases = new MemoryLeaseStore(tenants, memory);
    const t = tenants.get(tenant);
    const k = tenantKeys(prefix, tenant);
    const same = async <T>(m: () => Promise<T>, r: () => Promise<T>, tidy = (x: T) => x) => {
      const [a, b] = [tidy(await m()), tidy(await r())];
      expect(normalize(b)).toEqual(normalize(a));
      return a;
    };
    for (const [i, s] of steps.entries()) {
      /**
       * A past expiry, the same in both stores: scrambled over the steps (so
       * expiry order differs from key and step order) with ties (so equal
       * expiries sort by key, lease id or lock name).
       */
      const past = 1000 + ((i * 7919) % 13);
      switch (s.kind) {
        case "txn":
          await same(
            () => memory.txn(tenant, s.plan),
            () => redis.txn(tenant, s.plan),
          );
          break;
        case "get":
          await same(
            () => memory.get(tenant, s.keys),
            () => redis.get(tenant, s.keys),
          );
          break;
        case "range":
          await same(
            () => memory.range(tenant, s.query),
            () => redis.range(tenant, s.query),
          );
          break;
        case "fence":
          t.fences.set(s.lockName, s.token);
          await raw.hset(k.fence, s.lockName, String(s.token));
          break;
        case "sweep":
          await same(
            () => memory.sweepExpired(tenant, s.limit),
            () => redis.sweepExpired(tenant, s.limit),
          );
          break;
        case "age_key": {
          // Only a live key with a TTL of its own: it then expires at `past`.
          const kv = t.live(s.key, Date.now());
          if (kv?.leaseId !== 0 || kv.expireAt === undefined) break;
          t.store({ ...kv, expireAt: past });
          await raw.hset(recordKey(k, s.key), "x", String(past));
          await raw.zadd(k.exp, past, s.key);
          break;
        }
        case "lease_grant":
          await same(
            () => memoryLeases.grantLease(tenant, s.id, 600_000),
            () => redisLeases.grantLease(tenant, s.id, 600_000),
          );
          break;
        case "lease_renew":
          await same(
            () => memoryLeases.renewLease(tenant, s.id),
            () => redisLeases.renewLease(tenant, s.id),
            (r) => ({ ...r, locks: [...r.locks].sort(byName) }),
          );
          break;
        case "lease_revoke":
          await same(
            () => memoryLeases.revokeLease(tenant, s.id),
            () => redisLeases.revokeLease(tenant, s.id),
          );
          break;
        case "lease_get":
          await same(
            () => memoryLeases.getLease(tenant, s.id, s.withAttached),
            () => redisLeases.getLease(tenant, s.id, s.withAttached),
          );
          break;
        case "lease_list":
          await same(
            () => memoryLeases.listLeases(tenant),
            () => redisLeases.listLeases(tenant),
          );
          break;
        case "age_lease": {
          const lease =
            s.id === "busiest"
              ? [...t.leases.values()]
                  .filter((l) => l.expireAt > Date.now())
                  .sort((a, b) => b.keys.size - a.keys.size || a.id - b.id)[0]
              : t.leases.get(s.id);
          if (!lease) break;
          t.renewLease(lease, past);
          await raw.zadd(k.leaseExp, "XX", past, leaseMember(lease.id));
          break;
        }
        case "lock_grant": {
          const grant = {
            name: s.name,
            owner: s.owner,
            nonce: `n${i}`,
            nodeCounter: s.nodeCounter,
            acquireAt: ACQUIRE_AT,
            expireAt: s.expired ? past : FUTURE,
            leaseId: s.leaseId,
          };
          await same(
            () => memoryLeases.grantLock(tenant, grant),
            () => redisLeases.grantLock(tenant, grant),
          );
          break;
        }
        case "lock_get":
          await same(
            () => memoryLeases.getLock(tenant, s.name),
            () => redisLeases.getLock(tenant, s.name),
          );
          break;
        case "lock_list":
          await same(
            () => memoryLeases.listLocks(tenant, s.prefix),
            () => redisLeases.listLocks(tenant, s.prefix),
          );
          break;
        case "lock_release": {
          const token = s.token === "current" ? (t.fences.get(s.name) ?? 0) : s.token;
          await same(
            () => memoryLeases.releaseLock(tenant, s.name, token),
            () => redisLeases.releaseLock(tenant, s.name, token),
          );
          break;
        }
        case "lock_extend": {
          const token = s.token === "current" ? (t.fences.get(s.name) ?? 0) : s.token;
          await same(
            () => memoryLeases.extendLock(tenant, s.name, token, FUTURE + 1000),
            () => redisLeases.extendLock(tenant, s.name, token, FUTURE + 1000),
          );
          break;
        }
        case "age_lock": {
          // Only a live record without a lease (one on a lease ages with it).
          const lock = t.liveLock(s.name, Date.now());
          if (lock?.leaseId !== 0) break;
          t.storeLock({ ...lock, expireAt: past });
          await raw.hset(lockKey(k, s.name), "x", String(past));
          await raw.zadd(k.lockExp, past, s.name);
          break;
        }
      }
    }
    const feeds = [await memory.read(tenant, 0, 1000), await redis.read(tenant, 0, 1000)];
    expect(normalizeFeed(feeds[1]!)).toEqual(normalizeFeed(feeds[0]!));
    checkFeed(feeds[1]!.entries);
  }

  it("gives equal outcomes, reads and changefeeds for random plans", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.oneof(...kvSteps), { minLength: 1, maxLength: 25 }), compareRun),
      { numRuns: 200 },
    );
  });

  it("and with leases, lock records, fencing and expiry", async () => {
    await fc.assert(
      fc.asyncProperty(
        // size "max": lengths spread up to maxLength (the default keeps arrays short).
        fc.array(fc.oneof(...leaseAndLockSteps), { minLength: 5, maxLength: 40, size: "max" }),
        // Every lease granted first, so that writes and grants find live leases.
        (steps) =>
          compareRun([...LEASES.map((id) => ({ kind: "lease_grant" as const, id })), ...steps]),
      ),
      { numRuns: 200 },
    );
  });
});

/** Every entry is one revision, contiguous, each with at least one event. */
function checkFeed(entries: readonly FeedEntry[]): void {
  for (let i = 1; i < entries.length; i++) {
    expect(entries[i]!.revision).toBe(entries[i - 1]!.revision + 1);
  }
  for (const entry of entries) {
    expect(entry.events.length).toBeGreaterThan(0);
    for (const event of entry.events) {
      const kv: KeyValue = event.kv;
      if (event.kind !== "put") expect(kv.version).toBe(0);
      expect(kv.modRevision).toBe(entry.revision);
      expect(event.lock !== undefined).toBe(event.kind.startsWith("lock_"));
    }
  }
}
