/**
 * RedisKvStore driven directly on the shared Redis (a key prefix per store):
 * expiry on Redis's clock, exact range counts over unswept keys, the
 * changefeed (one entry per revision, contiguous, decodable, retained by
 * count and age), concurrent sweepers, fences, leases, blocking tails.
 */
import type { Redis } from "ioredis";
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from "vitest";
import type { FeedEntry, RangeQuery, TxnOp, TxnOutcome, TxnPlan } from "../../src/core/model.js";
import { checkKeyPrefix, tenantKeys } from "../../src/store/redis/keys.js";
import type { RedisKvStore } from "../../src/store/redis/redis-kv-store.js";
import { loadScripts, resolveIncludes } from "../../src/store/redis/scripts.js";
import { rawClient, startStore } from "../support/redis-kv.js";
import { startRedis } from "../support/redis-server.js";
import { uniquePrefix } from "../support/test-server.js";

const enc = (s: string) => new TextEncoder().encode(s);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const put = (
  key: string,
  value: string | Uint8Array = "v",
  extra: Partial<Extract<TxnOp, { kind: "put" }>> = {},
): TxnOp => ({
  kind: "put",
  key,
  value: typeof value === "string" ? enc(value) : value,
  ttlMs: undefined,
  leaseId: 0,
  prevKv: false,
  ...extra,
});
const plan = (success: TxnOp[], extra: Partial<TxnPlan> = {}): TxnPlan => ({
  fences: [],
  compares: [],
  success,
  failure: [],
  ...extra,
});
const done = (outcome: TxnOutcome) => {
  if (outcome.kind !== "done") throw new Error(`expected done, got ${outcome.kind}`);
  return outcome;
};
const query = (q: Partial<RangeQuery> = {}): RangeQuery => ({
  range: { start: "", end: undefined },
  after: undefined,
  limit: 100,
  keysOnly: false,
  countOnly: false,
  ...q,
});

/** Entries are one per revision, contiguous, and end at the current revision. */
async function expectContiguousFeed(store: RedisKvStore, tenant: string): Promise<FeedEntry[]> {
  const { entries, oldestRevision, revision } = await store.read(tenant, 0, 100_000);
  expect(entries[0]?.revision ?? 0).toBe(oldestRevision);
  for (const [i, e] of entries.entries()) expect(e.revision).toBe(oldestRevision + i);
  expect(entries.at(-1)?.revision ?? 0).toBe(revision);
  return entries;
}

describe("RedisKvStore", () => {
  const url = inject("redisUrl");
  const prefix = uniquePrefix();
  let store: RedisKvStore;
  let raw: Redis;
  const extra: RedisKvStore[] = [];
  let n = 0;
  const tenant = () => `tenant-${n++}`;

  beforeAll(async () => {
    store = await startStore(url, { keyPrefix: prefix });
    raw = rawClient(url);
  });
  afterEach(async () => {
    await Promise.all(extra.splice(0).map((s) => s.close()));
  });
  afterAll(async () => {
    await store?.close();
    await raw?.quit();
  });

  it("answers revision 0 and nothing for a tenant never written", async () => {
    const t = tenant();
    expect(await store.get(t, ["a"])).toEqual({ kvs: [undefined], revision: 0 });
    expect(await store.range(t, query())).toEqual({ kvs: [], count: 0, more: false, revision: 0 });
    expect(await store.read(t, 0, 10)).toEqual({ entries: [], oldestRevision: 0, revision: 0 });
    expect(await store.sweepExpired(t, 10)).toEqual({
      expired: 0,
      nextExpireAt: undefined,
      endedLocks: [],
    });
    expect(await store.tenants()).toContain(t);
  });

  it("coalesces writes of one turn into one script call, each plan atomic on its own", async () => {
    // A Redis of its own, so its command counters see only this store.
    const own = await startRedis();
    const ownRaw = rawClient(own.url);
    const calls = async () =>
      Number(/cmdstat_evalsha:calls=(\d+)/.exec(await ownRaw.info("commandstats"))?.[1] ?? 0);
    try {
      const mine = await startStore(own.url, { keyPrefix: prefix });
      extra.push(mine);
      done(await mine.txn("t", plan([put("warm")])));
      const before = await calls();
      const [x, y, z] = await Promise.all([
        mine.txn("t", plan([put("1")])),
        mine.txn("t", plan([put("2")])),
        mine.txn("t", plan([put("3")])),
      ]);
      expect([done(x).revision, done(y).revision, done(z).revision]).toEqual([2, 3, 4]);
      expect(await calls()).toBe(before + 1);
    } finally {
      await ownRaw.quit();
      await own.stop();
    }
    const t = tenant();
    done(await store.txn(t, plan([put("fenced-by")])));
    // Raise the lock's newest token to 5 through the fence hash the lock records use.
    await raw.hset(tenantKeys(prefix, t).fence, "lock", "5");
    // Issued in the same turn: they travel in one batch. The stale fence in the
    // middle refuses only its own plan.
    const [a, stale, b, reads] = await Promise.all([
      store.txn(t, plan([put("a", "1")])),
      store.txn(t, plan([put("x", "never")], { fences: [{ lockName: "lock", token: 4 }] })),
      store.txn(t, plan([put("b", "2")])),
      store.get(t, ["a", "b", "x"]),
    ]);
    expect(stale).toMatchObject({ kind: "fence_stale", currentToken: 5 });
    expect([done(a).revision, done(b).revision]).toEqual([2, 3]);
    // Reads of the same turn see one point in time, after... or before the batch: never half of it.
    const seen = reads.kvs.map((kv) => kv?.key);
    expect([
      [undefined, undefined, undefined],
      ["a", "b", undefined],
    ]).toContainEqual(seen);
    expect((await store.get(t, ["x"])).kvs).toEqual([undefined]);
    await expectContiguousFeed(store, t);
  });

  it("keeps binary values and non-ASCII keys intact, in the store and in the feed", async () => {
    const t = tenant();
    const value = new Uint8Array([0xff, 0x00, 0xc3, 0x28, 0x80, 0x0a]);
    const key = "ключ/\u{1F600}/\uE000";
    done(await store.txn(t, plan([put(key, value)])));
    const { kvs } = await store.get(t, [key]);
    expect(kvs[0]?.key).toBe(key);
    expect(kvs[0]?.value).toEqual(value);
    expect(kvs[0]?.value).toBeInstanceOf(Uint8Array);
    const [entry] = await expectContiguousFeed(store, t);
    expect(entry!.events[0]!.kv.key).toBe(key);
    expect(entry!.events[0]!.kv.value).toEqual(value);
  });

  it("a key with a 50 ms TTL is absent to Get after ~60 ms, with no sweep", async () => {
    const t = tenant();
    const before = Date.now();
    const outcome = done(await store.txn(t, plan([put("k", "v", { ttlMs: 50 })])));
    const result = outcome.results[0];
    expect(result?.kind).toBe("put");
    const expireAt = result?.kind === "put" ? result.kv.expireAt : undefined;
    expect(expireAt).toBeGreaterThanOrEqual(before + 50 - 5);
    expect(expireAt).toBeLessThanOrEqual(Date.now() + 50 + 5);
    expect((await store.get(t, ["k"])).kvs[0]?.key).toBe("k");
    await sleep(60);
    expect((await store.get(t, ["k"])).kvs[0]).toBeUndefined();
    // Not swept yet: the revision did not move and the record is still there.
    expect((await store.get(t, ["k"])).revision).toBe(1);
    expect(await raw.exists(`${tenantKeys(prefix, t).record}k`)).toBe(1);
  });

  it("counts a range exactly while expired keys wait for the sweeper", async () => {
    const t = tenant();
    const ops: TxnOp[] = [];
    for (let i = 0; i < 10; i++) {
      ops.push(put(`r/${i}`, "v", i % 2 === 0 ? { ttlMs: 20 } : {}));
    }
    ops.push(put("s/outside", "v", { ttlMs: 20 }));
    done(await store.txn(t, plan(ops)));
    await sleep(40);
    const all = await store.range(t, query({ range: { start: "r/", end: "r0" }, limit: 2 }));
    expect(all.count).toBe(5);
    expect(all.more).toBe(true);
    expect(all.kvs.map((kv) => kv.key)).toEqual(["r/1", "r/3"]);
    const next = await store.range(
      t,
      query({ range: { start: "r/", end: "r0" }, after: "r/3", limit: 2 }),
    );
    expect(next.count).toBe(3);
    expect(next.kvs.map((kv) => kv.key)).toEqual(["r/5", "r/7"]);
    const last = await store.range(
      t,
      query({ range: { start: "r/", end: "r0" }, after: "r/7", limit: 2 }),
    );
    expect(last).toMatchObject({ count: 1, more: false });
    const counted = await store.range(t, query({ countOnly: true, limit: 1 }));
    expect(counted).toMatchObject({ count: 5, more: false, kvs: [] });
    const keysOnly = await store.range(t, query({ keysOnly: true, limit: 1 }));
    expect(keysOnly.kvs[0]).toMatchObject({ key: "r/1", value: new Uint8Array(), version: 1 });
  });

  it("orders keys bytewise on UTF-8 (U+1F600 after U+E000), as ZRANGE BYLEX does", async () => {
    const t = tenant();
    const keys = ["\u{1F600}", "\uE000", "z", "é", "A", "a"];
    done(await store.txn(t, plan(keys.map((k) => put(k)))));
    const { kvs } = await store.range(t, query());
    expect(kvs.map((kv) => kv.key)).toEqual(["A", "a", "z", "é", "\uE000", "\u{1F600}"]);
  });

  it("expires a due key first at its own revision when a write touches it", async () => {
    const t = tenant();
    done(await store.txn(t, plan([put("k", "old", { ttlMs: 20 })])));
    await sleep(40);
    const outcome = done(await store.txn(t, plan([put("k", "new", { prevKv: true })])));
    expect(outcome.revision).toBe(3);
    const result = outcome.results[0];
    expect(result).toMatchObject({
      kind: "put",
      kv: { key: "k", version: 1, createRevision: 3, modRevision: 3, expireAt: undefined },
      prevKv: undefined,
    });
    const entries = await expectContiguousFeed(store, t);
    expect(entries.map((e) => e.events.map((ev) => ev.kind))).toEqual([
      ["put"],
      ["expire"],
      ["put"],
    ]);
    expect(entries[1]!.events[0]).toMatchObject({
      kv: { key: "k", modRevision: 2, version: 0, createRevision: 0 },
      prevKv: { key: "k", version: 1, modRevision: 1 },
    });
  });

  it("a put without a TTL clears the old TTL", async () => {
    const t = tenant();
    done(await store.txn(t, plan([put("k", "v", { ttlMs: 60_000 })])));
    done(await store.txn(t, plan([put("k", "w")])));
    expect((await store.get(t, ["k"])).kvs[0]?.expireAt).toBeUndefined();
    expect(await raw.zcard(tenantKeys(prefix, t).exp)).toBe(0);
    expect((await store.sweepExpired(t, 10)).nextExpireAt).toBeUndefined();
  });

  it("refuses a plan whose fence token is older than the stored one, applying nothing", async () => {
    const t = tenant();
    done(await store.txn(t, plan([put("k")])));
    await raw.hset(tenantKeys(prefix, t).fence, "lock-a", "5");
    const stale = await store.txn(
      t,
      plan([put("k", "x")], { fences: [{ lockName: "lock-a", token: 4 }] }),
    );
    expect(stale).toEqual({
      kind: "fence_stale",
      lockName: "lock-a",
      currentToken: 5,
      revision: 1,
    });
    const fresh = await store.txn(
      t,
      plan([put("k", "x")], { fences: [{ lockName: "lock-a", token: 5 }] }),
    );
    expect(done(fresh).revision).toBe(2);
    const unknown = await store.txn(
      t,
      plan([put("k", "y")], { fences: [{ lockName: "never-granted", token: 0 }] }),
    );
    expect(done(unknown).revision).toBe(3);
  });

  it("answers lease_not_found for a put with a lease that does not exist", async () => {
    const t = tenant();
    const outcome = await store.txn(t, plan([put("k", "v", { leaseId: 42 })]));
    expect(outcome).toEqual({ kind: "lease_not_found", leaseId: 42, revision: 0 });
    expect((await store.get(t, ["k"])).kvs[0]).toBeUndefined();
  });

  it("tells onExpiryScheduled listeners after a write that set an expiry", async () => {
    const t = tenant();
    const seen: [string, number][] = [];
    store.onExpiryScheduled((tenantName, at) => seen.push([tenantName, at]));
    const outcome = done(await store.txn(t, plan([put("a", "v", { ttlMs: 5000 }), put("b")])));
    const result = outcome.results[0];
    expect(seen.filter(([name]) => name === t)).toEqual([
      [t, result?.kind === "put" ? result.kv.expireAt : -1],
    ]);
  });

  it("sweeps due keys at one revision with one EXPIRE event each and reports the next", async () => {
    const t = tenant();
    done(
      await store.txn(
        t,
        plan([
          put("a", "1", { ttlMs: 10 }),
          put("b", "2", { ttlMs: 10 }),
          put("c", "3", { ttlMs: 10 }),
          put("later", "4", { ttlMs: 60_000 }),
        ]),
      ),
    );
    await sleep(30);
    const first = await store.sweepExpired(t, 2);
    expect(first.expired).toBe(2);
    expect(first.nextExpireAt).toBeLessThanOrEqual(Date.now());
    const second = await store.sweepExpired(t, 2);
    expect(second.expired).toBe(1);
    expect(second.nextExpireAt).toBeGreaterThan(Date.now() + 50_000);
    expect(await store.sweepExpired(t, 2)).toMatchObject({ expired: 0 });
    const entries = await expectContiguousFeed(store, t);
    expect(entries.map((e) => e.events.map((ev) => `${ev.kind}:${ev.kv.key}`))).toEqual([
      ["put:a", "put:b", "put:c", "put:later"],
      ["expire:a", "expire:b"],
      ["expire:c"],
    ]);
    expect(entries[1]!.events[0]!.prevKv?.value).toEqual(enc("1"));
  });

  it("two stores sweeping the same keys at once expire each key exactly once", async () => {
    const shared = uniquePrefix();
    const a = await startStore(url, { keyPrefix: shared });
    const b = await startStore(url, { keyPrefix: shared });
    extra.push(a, b);
    const t = tenant();
    const keys = Array.from({ length: 300 }, (_, i) => `k${i}`);
    for (let i = 0; i < keys.length; i += 100) {
      done(await a.txn(t, plan(keys.slice(i, i + 100).map((k) => put(k, "v", { ttlMs: 10 })))));
    }
    await sleep(30);
    const sweep = async (s: RedisKvStore) => {
      let total = 0;
      for (;;) {
        const { expired } = await s.sweepExpired(t, 7);
        total += expired;
        if (expired === 0) return total;
      }
    };
    const [fromA, fromB] = await Promise.all([sweep(a), sweep(b), sweep(a), sweep(b)]).then(
      (totals) => [totals[0]! + totals[2]!, totals[1]! + totals[3]!],
    );
    expect(fromA! + fromB!).toBe(keys.length);
    const entries = await expectContiguousFeed(a, t);
    const expired = entries.flatMap((e) => e.events.filter((ev) => ev.kind === "expire"));
    expect(expired.map((ev) => ev.kv.key).sort()).toEqual([...keys].sort());
  });

  it("retains exactly historyEntries feed entries", async () => {
    const s = await startStore(url, { watch: { historyEntries: 5 } });
    extra.push(s);
    const t = tenant();
    for (let i = 0; i < 12; i++) done(await s.txn(t, plan([put(`k${i}`)])));
    const { entries, oldestRevision, revision } = await s.read(t, 0, 100);
    expect(revision).toBe(12);
    expect(oldestRevision).toBe(8);
    expect(entries.map((e) => e.revision)).toEqual([8, 9, 10, 11, 12]);
    expect((await s.read(t, 10, 2)).entries.map((e) => e.revision)).toEqual([10, 11]);
    expect((await s.read(t, 13, 2)).entries).toEqual([]);
  });

  it("trims feed entries older than historyMaxAgeMs on sweep, keeping the newest", async () => {
    const s = await startStore(url, { watch: { historyMaxAgeMs: 40 } });
    extra.push(s);
    const t = tenant();
    for (let i = 0; i < 4; i++) done(await s.txn(t, plan([put(`k${i}`)])));
    await sleep(60);
    done(await s.txn(t, plan([put("fresh")])));
    await s.sweepExpired(t, 10);
    expect((await s.read(t, 0, 10)).entries.map((e) => e.revision)).toEqual([5]);
    await sleep(60);
    await s.sweepExpired(t, 10);
    const { entries, oldestRevision } = await s.read(t, 0, 10);
    expect(entries.map((e) => e.revision)).toEqual([5]);
    expect(oldestRevision).toBe(5);
  });

  it("tail waits for the next entry, returns at once when entries exist, stops on abort", async () => {
    const t = tenant();
    done(await store.txn(t, plan([put("k")])));
    const now = new AbortController();
    expect((await store.tail(t, 0, 10, 1000, now.signal)).map((e) => e.revision)).toEqual([1]);

    const waiting = store.tail(t, 1, 10, 2000, now.signal);
    await sleep(30);
    done(await store.txn(t, plan([put("k", "2")])));
    expect((await waiting).map((e) => e.revision)).toEqual([2]);

    const aborted = new AbortController();
    const started = Date.now();
    const blocked = store.tail(t, 2, 10, 5000, aborted.signal);
    await sleep(30);
    aborted.abort();
    expect(await blocked).toEqual([]);
    expect(Date.now() - started).toBeLessThan(1000);

    const timedOut = Date.now();
    expect(await store.tail(t, 2, 10, 50, now.signal)).toEqual([]);
    expect(Date.now() - timedOut).toBeLessThan(1000);
  });

  it("is ready once started, with every script loaded", async () => {
    expect(await store.ready()).toBe(true);
  });
});

describe("Lua scripts", () => {
  it("document as many KEYS as their file name says, and return codes, not error strings", () => {
    for (const script of loadScripts()) {
      const declared = [...script.lua.matchAll(/KEYS\[(\d+)\]/g)].map((m) => Number(m[1]));
      expect(Math.max(...declared), script.file).toBe(script.numberOfKeys);
      expect(script.lua, script.file).toMatch(/Input:[\s\S]*ARGV\[1\][\s\S]*Output:/);
      expect(script.lua, script.file).not.toMatch(/redis\.error_reply|error\(/);
      expect(script.lua.startsWith("#!lua\n"), script.file).toBe(true);
    }
  });

  it("splices each include once and refuses include cycles", () => {
    const files: Record<string, string> = {
      "lib/a": '--- @include "lib/b"\nlocal a = 1',
      "lib/b": "local b = 2",
      "lib/c": '--- @include "lib/d"',
      "lib/d": '--- @include "lib/c"',
    };
    const read = (stem: string) => files[stem] ?? "";
    const out = resolveIncludes('--- @include "lib/a"\n--- @include "lib/b"\nreturn 1', read);
    expect(out.match(/local b = 2/g)).toHaveLength(1);
    expect(out).toContain("local a = 1");
    expect(() => resolveIncludes('--- @include "lib/c"', read)).toThrow(/cycle/);
  });

  it("refuses a key prefix that would break the hash tags", () => {
    expect(() => checkKeyPrefix("lk")).not.toThrow();
    for (const bad of ["", "a{b", "x}"]) expect(() => checkKeyPrefix(bad)).toThrow(/prefix/);
  });
});
