/**
 * RedisLeaseStore driven directly on the shared Redis: leases and lock
 * records expiring on Redis's clock (lazily for reads and writes, by the
 * sweep script), several stores sweeping the same tenant at once, lock
 * details in the changefeed, the cost rule that a key without a lease never
 * touches the lease keys, and the one client shared by the backend's stores.
 */
import type { Redis } from "ioredis";
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from "vitest";
import type { FeedEntry, TxnOp, TxnOutcome, TxnPlan } from "../../src/core/model.js";
import type { LockGrant } from "../../src/core/ports.js";
import { leaseMember, leaseSetKey, tenantKeys } from "../../src/store/redis/keys.js";
import type { RedisKvStore } from "../../src/store/redis/redis-kv-store.js";
import { RedisLeaseStore } from "../../src/store/redis/redis-lease-store.js";
import { rawClient, startStore } from "../support/redis-kv.js";
import { uniquePrefix } from "../support/test-server.js";

const enc = (s: string) => new TextEncoder().encode(s);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const put = (key: string, leaseId = 0, ttlMs?: number): TxnOp => ({
  kind: "put",
  key,
  value: enc(key),
  ttlMs,
  leaseId,
  prevKv: false,
});
const plan = (success: TxnOp[]): TxnPlan => ({ fences: [], compares: [], success, failure: [] });
const done = (outcome: TxnOutcome) => {
  if (outcome.kind !== "done") throw new Error(`expected done, got ${outcome.kind}`);
  return outcome;
};
const grant = (name: string, extra: Partial<LockGrant> = {}): LockGrant => ({
  name,
  owner: "o",
  nonce: `nonce-${name}`,
  nodeCounter: 0,
  acquireAt: Date.now(),
  expireAt: Date.now() + 60_000,
  leaseId: 0,
  ...extra,
});
const kinds = (entries: readonly FeedEntry[]) =>
  entries.map((e) => e.events.map((ev) => `${ev.kind}:${ev.kv.key}`));

describe("RedisLeaseStore", () => {
  const url = inject("redisUrl");
  const prefix = uniquePrefix();
  let kv: RedisKvStore;
  let leases: RedisLeaseStore;
  let raw: Redis;
  const extra: RedisKvStore[] = [];
  let n = 0;
  const tenant = () => `tenant-${n++}`;

  beforeAll(async () => {
    kv = await startStore(url, { keyPrefix: prefix });
    leases = new RedisLeaseStore(kv.state);
    raw = rawClient(url);
  });
  afterEach(async () => {
    await Promise.all(extra.splice(0).map((s) => s.close()));
  });
  afterAll(async () => {
    await kv?.close();
    await raw?.quit();
  });

  it("shares the KV store's one client", () => {
    expect(kv.state.client).toBe((leases as unknown as { client: unknown }).client);
  });

  it("a key on a lease reads with the lease's expiry and vanishes with it, before any sweep", async () => {
    const t = tenant();
    const { lease } = await leases.grantLease(t, 5, 60);
    done(await kv.txn(t, plan([put("k", 5), put("plain")])));
    const read = await kv.get(t, ["k"]);
    expect(read.kvs[0]).toMatchObject({ key: "k", leaseId: 5, expireAt: lease.expireAt });
    expect((await leases.renewLease(t, 5)).lease!.expireAt).toBeGreaterThanOrEqual(lease.expireAt);
    await sleep(90);
    // Dead: absent to reads, counts and compares, though nothing was swept.
    expect((await kv.get(t, ["k"])).kvs[0]).toBeUndefined();
    const range = await kv.range(t, {
      range: { start: "", end: undefined },
      after: undefined,
      limit: 10,
      keysOnly: false,
      countOnly: false,
    });
    expect(range.kvs.map((x) => x.key)).toEqual(["plain"]);
    expect(range.count).toBe(1);
    expect((await leases.getLease(t, 5, true)).lease).toBeUndefined();
    expect((await leases.listLeases(t)).leases).toEqual([]);
    expect(await leases.renewLease(t, 5)).toMatchObject({ lease: undefined, locks: [] });
    expect(await kv.txn(t, plan([put("other", 5)]))).toMatchObject({ kind: "lease_not_found" });
    // A write of the key expires it first, at its own revision.
    const outcome = done(await kv.txn(t, plan([put("k")])));
    expect(outcome.revision).toBe(3);
    const { entries } = await kv.read(t, 0, 10);
    expect(kinds(entries)).toEqual([["put:k", "put:plain"], ["expire:k"], ["put:k"]]);
  });

  it("sweeps a due lease with its keys and locks at one revision, then a due lock", async () => {
    const t = tenant();
    await leases.grantLease(t, 9, 30);
    done(await kv.txn(t, plan([put("b", 9), put("a", 9)])));
    await leases.grantLock(t, grant("held", { leaseId: 9 }));
    await leases.grantLock(t, grant("ttl", { expireAt: Date.now() + 30 }));
    await sleep(60);
    const swept = await kv.sweepExpired(t, 100);
    // The ended locks come back with their nonces, so their node holds are freed.
    expect(swept).toEqual({
      expired: 4,
      nextExpireAt: undefined,
      endedLocks: [
        { name: "held", nonce: "nonce-held" },
        { name: "ttl", nonce: "nonce-ttl" },
      ],
    });
    const { entries } = await kv.read(t, 0, 10);
    expect(kinds(entries).at(-1)).toEqual([
      "expire:a",
      "expire:b",
      "lock_expired:/locks/held",
      "lock_expired:/locks/ttl",
    ]);
    expect(entries.at(-1)!.events[2]!.lock).toMatchObject({ name: "held", leaseId: 9 });
    // Nothing of the lease or the locks is left behind.
    const k = tenantKeys(prefix, t);
    expect(await raw.exists(k.leaseExp, k.leaseTtl, k.lockExp, k.lockIdx)).toBe(0);
    expect(await raw.exists(leaseSetKey(k, 9, "k"), leaseSetKey(k, 9, "l"))).toBe(0);
    expect(await raw.keys(`${k.lock}*`)).toEqual([]);
  });

  it("records lock events with their details in the changefeed", async () => {
    const t = tenant();
    const acquireAt = Date.now();
    const granted = await leases.grantLock(
      t,
      grant("ü/lock", { owner: "ö", nodeCounter: 41, acquireAt, expireAt: acquireAt + 60_000 }),
    );
    expect(granted).toMatchObject({ kind: "granted", revision: 1, lock: { fencingToken: 42 } });
    expect(await leases.releaseLock(t, "ü/lock", 42)).toEqual({ status: "released", revision: 2 });
    const { entries } = await kv.read(t, 0, 10);
    expect(entries.map((e) => e.events[0])).toEqual([
      expect.objectContaining({
        kind: "lock_acquired",
        kv: expect.objectContaining({ key: "/locks/ü/lock", modRevision: 1, version: 0 }),
        lock: {
          name: "ü/lock",
          owner: "ö",
          fencingToken: 42,
          acquireAt,
          expireAt: acquireAt + 60_000,
          leaseId: 0,
        },
      }),
      expect.objectContaining({ kind: "lock_released" }),
    ]);
    expect(await raw.hget(tenantKeys(prefix, t).fence, "ü/lock")).toBe("42");
  });

  it("two stores sweeping the same leases and locks at once emit one event per key and lock", async () => {
    const shared = uniquePrefix();
    const a = await startStore(url, { keyPrefix: shared });
    const b = await startStore(url, { keyPrefix: shared });
    extra.push(a, b);
    const la = new RedisLeaseStore(a.state);
    const t = tenant();
    const keys: string[] = [];
    const locks: string[] = [];
    for (let id = 1; id <= 20; id++) {
      await la.grantLease(t, id, 20);
      const mine = Array.from({ length: 5 }, (_, i) => `k${id}/${i}`);
      keys.push(...mine);
      done(await a.txn(t, plan(mine.map((key) => put(key, id)))));
      locks.push(`lease-lock-${id}`);
      await la.grantLock(t, grant(`lease-lock-${id}`, { leaseId: id }));
      locks.push(`ttl-lock-${id}`);
      await la.grantLock(t, grant(`ttl-lock-${id}`, { expireAt: Date.now() + 20 }));
    }
    await sleep(50);
    const sweep = async (s: RedisKvStore) => {
      let total = 0;
      for (;;) {
        const { expired } = await s.sweepExpired(t, 3);
        total += expired;
        if (expired === 0 && (await s.sweepExpired(t, 3)).expired === 0) return total;
      }
    };
    const totals = await Promise.all([sweep(a), sweep(b), sweep(a), sweep(b)]);
    expect(totals.reduce((x, y) => x + y, 0)).toBe(keys.length + locks.length);
    const { entries } = await a.read(t, 0, 10_000);
    const events = entries.flatMap((e) => e.events);
    const expired = events.filter((e) => e.kind === "expire").map((e) => e.kv.key);
    const lockExpired = events.filter((e) => e.kind === "lock_expired").map((e) => e.lock!.name);
    expect(expired.sort()).toEqual([...keys].sort());
    expect(lockExpired.sort()).toEqual([...locks].sort());
    expect((await la.listLeases(t)).leases).toEqual([]);
    expect((await la.listLocks(t, "")).locks).toEqual([]);
    for (let i = 1; i < entries.length; i++) {
      expect(entries[i]!.revision).toBe(entries[i - 1]!.revision + 1);
    }
  });

  it("a grant of a dead, unswept lease id ends the old one first, with its events", async () => {
    const t = tenant();
    await leases.grantLease(t, 3, 20);
    done(await kv.txn(t, plan([put("x", 3)])));
    await sleep(40);
    const again = await leases.grantLease(t, 3, 60_000);
    expect(again).toMatchObject({ created: true, revision: 2, lease: { grantedTtlMs: 60_000 } });
    expect((await leases.grantLease(t, 3, 10)).created).toBe(false);
    const { entries } = await kv.read(t, 0, 10);
    expect(kinds(entries)).toEqual([["put:x"], ["expire:x"]]);
    expect((await leases.getLease(t, 3, true)).lease).toMatchObject({ keys: [], locks: [] });
  });

  it("lists live leases by id and locks by prefix, in bytewise name order", async () => {
    const t = tenant();
    for (const id of [10, 9, 2 ** 53 - 1, 100]) await leases.grantLease(t, id, 60_000);
    expect((await leases.listLeases(t)).leases.map((l) => l.id)).toEqual([9, 10, 100, 2 ** 53 - 1]);
    expect(
      await raw.zscore(tenantKeys(prefix, t).leaseExp, leaseMember(2 ** 53 - 1)),
    ).not.toBeNull();
    for (const name of ["p/\u{1F600}", "p/\uE000", "p/a", "p", "q"]) {
      await leases.grantLock(t, grant(name));
    }
    const listed = await leases.listLocks(t, "p/");
    expect(listed.locks.map((l) => l.name)).toEqual(["p/a", "p/\uE000", "p/\u{1F600}"]);
    expect((await leases.listLocks(t, "")).locks).toHaveLength(5);
  });

  it("tells onExpiryScheduled listeners of lease and lock expiries", async () => {
    const t = tenant();
    const seen: number[] = [];
    kv.onExpiryScheduled((name, at) => {
      if (name === t) seen.push(at);
    });
    const { lease } = await leases.grantLease(t, 1, 5000);
    const expireAt = Date.now() + 5000;
    await leases.grantLock(t, grant("l", { expireAt }));
    expect(seen).toEqual([lease.expireAt, expireAt]);
  });

  it("a key without a lease never touches the lease keys", async () => {
    const t = tenant();
    done(await kv.txn(t, plan([put("warm")])));
    // ioredis switches a connection to "monitoring" one tick after MONITOR's
    // OK, and stops at disconnect(); MONITOR lines parsed outside that window
    // come out as "Command queue state error". Those lines predate or follow
    // the checked commands, so only that error outside the window is ignored.
    const monitor = raw.duplicate({ monitor: true, lazyConnect: true });
    const monitorErrors: Error[] = [];
    monitor.on("error", (error: Error) => {
      // RedisStatus omits "monitoring", which ioredis sets at run time.
      const outsideWindow = (monitor.status as string) !== "monitoring";
      if (!(outsideWindow && error.message.startsWith("Command queue state error"))) {
        monitorErrors.push(error);
      }
    });
    // Not events.once: it rejects on the first "error", which may be that race.
    const monitoring = new Promise<void>((resolve) => monitor.once("monitoring", () => resolve()));
    monitor.connect().catch((error: Error) => monitorErrors.push(error));
    await monitoring;
    // Commands run inside the scripts (MONITOR reports them with source "lua").
    const commands: string[] = [];
    monitor.on("monitor", (_time: string, args: string[], source: string) => {
      if (source.includes("lua")) commands.push(args.join(" "));
    });
    try {
      done(await kv.txn(t, plan([put("a"), put("b", 0, 60_000)])));
      await kv.get(t, ["a", "b", "missing"]);
      done(
        await kv.txn(t, {
          fences: [],
          compares: [{ key: "a", operator: "equal", target: { kind: "version", value: 1 } }],
          success: [{ kind: "delete", key: "a", prevKv: true }],
          failure: [],
        }),
      );
      await sleep(50);
    } finally {
      monitor.disconnect();
    }
    expect(monitorErrors).toEqual([]);
    const mine = commands.filter((c) => c.includes(`{${t}}`));
    expect(mine.length).toBeGreaterThan(10);
    expect(mine.filter((c) => c.includes(":lease:"))).toEqual([]);
  });
});
