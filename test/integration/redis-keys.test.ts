/**
 * Key layout: tenant names and user keys full of `{`, `}` and `:` never
 * reach another tenant's keys, and every key of a tenant hashes to one
 * Cluster slot. Runs on a one-node Redis Cluster (it owns every slot), where
 * Redis itself refuses any script that touches keys of two slots, and where
 * CLUSTER KEYSLOT is available.
 */
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { TxnOp } from "../../src/core/model.js";
import { encodeTenant, tenantKeys } from "../../src/store/redis/keys.js";
import type { RedisKvStore } from "../../src/store/redis/redis-kv-store.js";
import { RedisLeaseStore } from "../../src/store/redis/redis-lease-store.js";
import { rawClient, startStore } from "../support/redis-kv.js";
import { type RedisProcess, startRedis } from "../support/redis-server.js";

const enc = (s: string) => new TextEncoder().encode(s);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const put = (key: string, ttlMs?: number, leaseId = 0): TxnOp => ({
  kind: "put",
  key,
  value: enc(key),
  ttlMs,
  leaseId,
  prevKv: false,
});

const TENANTS = ["a", "a}", "{a}", "a:k:b", "}:{", "%41", "A", "", "ü{x}"];
const USER_KEYS = ["k", "}:meta", "{a}", "x:k:y", ":idx", "}{", "\u{1F600}{}"];

describe("Redis key layout", () => {
  let redis: RedisProcess;
  let raw: Redis;
  let store: RedisKvStore;
  const prefix = "lay";

  beforeAll(async () => {
    redis = await startRedis({ args: ["--cluster-enabled", "yes"] });
    raw = rawClient(redis.url);
    await raw.call("CLUSTER", "ADDSLOTSRANGE", "0", "16383");
    for (let i = 0; i < 100; i++) {
      const info = String(await raw.call("CLUSTER", "INFO"));
      if (info.includes("cluster_state:ok")) break;
      await sleep(50);
    }
    store = await startStore(redis.url, { keyPrefix: prefix });
  });
  afterAll(async () => {
    await store?.close();
    await raw?.quit();
    await redis?.stop();
  });

  it("runs on a node that refuses scripts touching two slots (so the next test means something)", async () => {
    const script = "#!lua\nredis.call('GET', KEYS[1]); return redis.call('GET', 'other{zz}')";
    await expect(raw.eval(script, 1, "one{x}")).rejects.toThrow(/same slot/);
  });

  it("encodes tenants without braces or colons, injectively", () => {
    const encoded = TENANTS.map(encodeTenant);
    for (const e of encoded) expect(e).toMatch(/^[A-Za-z0-9._%-]+$/);
    expect(new Set(encoded).size).toBe(TENANTS.length);
    expect(encodeTenant("a}")).toBe("a%7D");
    expect(encodeTenant("%41")).toBe("%2541");
  });

  it("keeps each tenant's keys in its own namespace and in one slot, under every script", async () => {
    for (const tenant of TENANTS) {
      const ops = [...USER_KEYS.map((k) => put(k)), put("short", 10)];
      const outcome = await store.txn(tenant, {
        fences: [{ lockName: "}{", token: 1 }],
        compares: [{ key: "}:meta", operator: "equal", target: { kind: "exists", value: false } }],
        success: ops,
        failure: [],
      });
      expect(outcome).toMatchObject({ kind: "done", succeeded: true, revision: 1 });
    }
    await sleep(30);
    for (const tenant of TENANTS) {
      // Every script, on a node that refuses cross-slot access in scripts.
      expect((await store.sweepExpired(tenant, 10)).expired).toBe(1);
      expect((await store.get(tenant, USER_KEYS)).kvs.map((kv) => kv?.key)).toEqual(USER_KEYS);
      const range = await store.range(tenant, {
        range: { start: "", end: undefined },
        after: undefined,
        limit: 100,
        keysOnly: false,
        countOnly: false,
      });
      expect(range.count).toBe(USER_KEYS.length);
      expect((await store.read(tenant, 0, 10)).revision).toBe(2);
      const deleted = await store.txn(tenant, {
        fences: [],
        compares: [],
        success: [{ kind: "delete_range", range: { start: "}", end: undefined }, prevKv: false }],
        failure: [],
      });
      expect(deleted).toMatchObject({ kind: "done", revision: 3 });
    }

    const all = (await raw.keys(`${prefix}:*`)).filter((k) => k.includes("{"));
    for (const tenant of TENANTS) {
      const keys = tenantKeys(prefix, tenant);
      const own = all.filter((k) => k.startsWith(keys.base));
      const fixed = [keys.meta, keys.idx, keys.exp, keys.feed, keys.fence];
      for (const k of own) {
        if (!fixed.includes(k)) expect(k.startsWith(keys.record)).toBe(true);
      }
      // The user keys left after the range delete, as records of this tenant only.
      const left = USER_KEYS.filter((k) => Buffer.compare(Buffer.from(k), Buffer.from("}")) < 0);
      expect(own.filter((k) => k.startsWith(keys.record)).sort()).toEqual(
        left.map((k) => keys.record + k).sort(),
      );
      const slots = new Set<number>();
      for (const k of own) slots.add(Number(await raw.call("CLUSTER", "KEYSLOT", k)));
      expect(slots.size).toBe(1);
      expect(await raw.call("CLUSTER", "KEYSLOT", `${keys.base}k:}{x}`)).toBe([...slots][0]);
    }
    // No key of one tenant lies under another tenant's base.
    const bases = TENANTS.map((t) => tenantKeys(prefix, t).base);
    for (const k of all) expect(bases.filter((b) => k.startsWith(b))).toHaveLength(1);
  });
  it("keeps leases and lock records in the tenant's namespaces and slot, under every script", async () => {
    const leases = new RedisLeaseStore(store.state);
    const lockNames = ["}{", "x:lock:r:y", "{a}", "\u{1F600}{}"];
    const p = "lease-";
    for (const tenant of TENANTS) {
      await leases.grantLease(tenant, 77, 60_000);
      await leases.grantLease(tenant, 78, 200);
      const attached = await store.txn(tenant, {
        fences: [],
        compares: [],
        success: [
          ...USER_KEYS.map((k) => put(`${p}${k}`, undefined, 77)),
          put(`${p}short`, undefined, 78),
        ],
        failure: [],
      });
      expect(attached).toMatchObject({ kind: "done" });
      for (const [i, name] of lockNames.entries()) {
        const granted = await leases.grantLock(tenant, {
          name,
          owner: "o",
          nonce: `n${i}`,
          nodeCounter: 0,
          acquireAt: Date.now(),
          expireAt: Date.now() + (i === 0 ? 200 : 60_000),
          leaseId: i === 1 ? 77 : i === 2 ? 78 : 0,
        });
        expect(granted.kind).toBe("granted");
      }
      expect((await leases.renewLease(tenant, 77)).locks.map((l) => l.name)).toEqual([
        lockNames[1],
      ]);
      expect((await leases.getLease(tenant, 77, true)).lease?.keys).toHaveLength(USER_KEYS.length);
      expect((await leases.listLeases(tenant)).leases).toHaveLength(2);
      expect((await leases.listLocks(tenant, "")).locks).toHaveLength(4);
      expect((await leases.getLock(tenant, "{a}")).lock?.leaseId).toBe(78);
      const held = await leases.getLock(tenant, lockNames[3]!);
      const extended = await leases.extendLock(
        tenant,
        lockNames[3]!,
        held.lock!.fencingToken,
        Date.now() + 90_000,
      );
      expect(extended.status).toBe("extended");
    }
    await sleep(250);
    for (const tenant of TENANTS) {
      // Lease 78 (one key, one lock) and the 200 ms lock expire.
      expect((await store.sweepExpired(tenant, 10)).expired).toBe(3);
      const released = await leases.getLock(tenant, lockNames[3]!);
      expect(
        (await leases.releaseLock(tenant, lockNames[3]!, released.lock!.fencingToken)).status,
      ).toBe("released");
      expect((await leases.revokeLease(tenant, 77)).found).toBe(true);
      expect((await store.get(tenant, [`${p}k`])).kvs[0]).toBeUndefined();
    }
    for (const tenant of TENANTS) {
      const keys = tenantKeys(prefix, tenant);
      const own = (await raw.keys(`${prefix}:*`)).filter((k) => k.startsWith(keys.base));
      const slots = new Set<number>();
      for (const k of own) slots.add(Number(await raw.call("CLUSTER", "KEYSLOT", k)));
      expect(slots.size).toBe(1);
      // Everything of the leases and locks is gone again; the fence tokens stay.
      expect(own.filter((k) => k.includes(":lease:") || k.includes(":lock:"))).toEqual([]);
      expect(await raw.hlen(keys.fence)).toBe(lockNames.length);
    }
  });
});
