/**
 * Leases and lock records of the embedded backend, on the shared tenant
 * state (see memory-tenant.ts): the same semantics as the Redis scripts.
 */
import { compareKeys } from "../../core/keys.js";
import type { ChangeEvent, LeaseInfo, LockRecord, Tenant } from "../../core/model.js";
import type { LeaseStore, LockGrant, LockRecords } from "../../core/ports.js";
import type { MemoryKvStore } from "./memory-kv-store.js";
import { lockEventKv, type MemoryLease, type MemoryTenants } from "./memory-tenant.js";

function info(lease: MemoryLease, withAttached: boolean): LeaseInfo {
  return {
    id: lease.id,
    grantedTtlMs: lease.grantedTtlMs,
    expireAt: lease.expireAt,
    ...(withAttached
      ? { keys: [...lease.keys].sort(compareKeys), locks: [...lease.locks].sort(compareKeys) }
      : {}),
  };
}

export class MemoryLeaseStore implements LeaseStore, LockRecords {
  constructor(
    private readonly tenants: MemoryTenants,
    /** Told of new expiries so the sweeper wakes on time. */
    private readonly kv: MemoryKvStore,
  ) {}

  async grantLease(tenant: Tenant, id: number, ttlMs: number) {
    const t = this.tenants.get(tenant);
    const now = Date.now();
    const live = t.liveLease(id, now);
    if (live) return { created: false, lease: info(live, false), revision: t.revision };
    // A lease that ran out but was not swept yet ends first, with its events.
    const stale = t.leases.get(id);
    if (stale) {
      const events: ChangeEvent[] = [];
      t.endLease(stale, t.revision + 1, events);
      t.commitIfAny(events);
    }
    const lease: MemoryLease = {
      id,
      grantedTtlMs: ttlMs,
      expireAt: now + ttlMs,
      keys: new Set(),
      locks: new Set(),
    };
    t.addLease(lease);
    this.kv.scheduled(tenant, lease.expireAt);
    return { created: true, lease: info(lease, false), revision: t.revision };
  }

  async renewLease(tenant: Tenant, id: number) {
    const t = this.tenants.get(tenant);
    const now = Date.now();
    const lease = t.liveLease(id, now);
    if (!lease) return { lease: undefined, revision: t.revision, locks: [] };
    t.renewLease(lease, now + lease.grantedTtlMs);
    this.kv.scheduled(tenant, lease.expireAt);
    const locks = [...lease.locks].flatMap((name) => {
      const lock = t.liveLock(name, now);
      return lock ? [{ name, nonce: lock.nonce }] : [];
    });
    return { lease: info(lease, false), revision: t.revision, locks };
  }

  async revokeLease(tenant: Tenant, id: number) {
    const t = this.tenants.get(tenant);
    const lease = t.leases.get(id);
    if (!lease) return { found: false, revision: t.revision, locks: [] };
    const found = t.liveLease(id, Date.now()) !== undefined;
    const events: ChangeEvent[] = [];
    const locks = t.endLease(lease, t.revision + 1, events);
    return { found, revision: t.commitIfAny(events), locks };
  }

  async getLease(tenant: Tenant, id: number, withAttached: boolean) {
    const t = this.tenants.get(tenant);
    const lease = t.liveLease(id, Date.now());
    return { lease: lease && info(lease, withAttached), revision: t.revision };
  }

  async listLeases(tenant: Tenant) {
    const t = this.tenants.get(tenant);
    const now = Date.now();
    const leases = [...t.leases.values()]
      .filter((l) => l.expireAt > now)
      .map((l) => info(l, false));
    leases.sort((a, b) => a.id - b.id);
    return { leases, revision: t.revision };
  }

  async grantLock(tenant: Tenant, grant: LockGrant) {
    const t = this.tenants.get(tenant);
    const now = Date.now();
    const lease = grant.leaseId !== 0 ? t.liveLease(grant.leaseId, now) : undefined;
    if (grant.leaseId !== 0 && !lease)
      return { kind: "lease_not_found" as const, revision: t.revision };
    // A record that ran out unswept expires first, with its own event.
    const stale = t.liveLock(grant.name, now) ? undefined : t.removeLock(grant.name);
    if (stale)
      t.commitIfAny([
        {
          kind: "lock_expired",
          kv: lockEventKv(grant.name, t.revision + 1),
          prevKv: undefined,
          lock: stale,
        },
      ]);
    const revision = t.revision + 1;
    const token = Math.max(grant.nodeCounter, t.fences.get(grant.name) ?? 0) + 1;
    t.fences.set(grant.name, token);
    const lock: LockRecord = {
      name: grant.name,
      owner: grant.owner,
      nonce: grant.nonce,
      fencingToken: token,
      acquireAt: grant.acquireAt,
      expireAt: lease ? lease.expireAt : grant.expireAt,
      leaseId: grant.leaseId,
    };
    t.storeLock(lock);
    t.commit({
      revision,
      events: [
        { kind: "lock_acquired", kv: lockEventKv(grant.name, revision), prevKv: undefined, lock },
      ],
    });
    if (!lease) this.kv.scheduled(tenant, lock.expireAt);
    return { kind: "granted" as const, lock, revision };
  }

  async getLock(tenant: Tenant, name: string) {
    const t = this.tenants.get(tenant);
    return { lock: t.liveLock(name, Date.now()), revision: t.revision };
  }

  async listLocks(tenant: Tenant, prefix: string) {
    const t = this.tenants.get(tenant);
    const now = Date.now();
    return {
      locks: t.lockNames(prefix, now).map((name) => t.liveLock(name, now)!),
      revision: t.revision,
    };
  }

  async releaseLock(tenant: Tenant, name: string, token: number) {
    const t = this.tenants.get(tenant);
    const lock = t.liveLock(name, Date.now());
    if (!lock) return { status: "not_found" as const, revision: t.revision };
    if (lock.fencingToken !== token) return { status: "not_owner" as const, revision: t.revision };
    t.removeLock(name);
    const revision = t.commitIfAny([
      { kind: "lock_released", kv: lockEventKv(name, t.revision + 1), prevKv: undefined, lock },
    ]);
    return { status: "released" as const, revision };
  }

  async extendLock(tenant: Tenant, name: string, token: number, expireAt: number) {
    const t = this.tenants.get(tenant);
    const lock = t.liveLock(name, Date.now());
    if (!lock) return { status: "not_found" as const, lock: undefined, revision: t.revision };
    if (lock.fencingToken !== token)
      return { status: "not_owner" as const, lock: undefined, revision: t.revision };
    const extended = { ...lock, expireAt };
    t.storeLock(extended);
    this.kv.scheduled(tenant, expireAt);
    return { status: "extended" as const, lock: extended, revision: t.revision };
  }
}
