/**
 * Leases and lock records on Redis, with the observable semantics of
 * MemoryLeaseStore: each call is one Lua script (scripts/lease-*.lua,
 * scripts/lock-*.lua, helpers in scripts/lib/lease.lua) on Redis's clock,
 * sharing the client, the scripts, the epoch check and the revision counter
 * and changefeed of the KV store through RedisState. Lease and lock expiry
 * is swept by the KV sweep script (kv-sweep-8.lua), so one sweeper serves
 * keys, leases and locks, once each even with several replicas.
 *
 * Times are whole milliseconds: a grant's acquire and expire times are
 * rounded down before they are stored.
 */
import type { Redis } from "ioredis";
import { prefixEnd } from "../../core/keys.js";
import type { LeaseInfo, LockRecord, Tenant } from "../../core/model.js";
import type { LeaseLocks, LeaseStore, LockGrant, LockRecords } from "../../core/ports.js";
import { expiryKeys } from "./keys.js";
import type { RedisState } from "./redis-state.js";

type LockReply = [string, string, string, number, number, number, number];

function decodeLock(raw: LockReply): LockRecord {
  const [name, owner, nonce, fencingToken, acquireAt, expireAt, leaseId] = raw;
  return { name, owner, nonce, fencingToken, acquireAt, expireAt, leaseId };
}

/** A flat [name, nonce, name, nonce, ...] reply as LeaseLocks. */
function decodeHeld(flat: string[]): LeaseLocks["locks"] {
  const locks: { name: string; nonce: string }[] = [];
  for (let i = 0; i + 1 < flat.length; i += 2) locks.push({ name: flat[i]!, nonce: flat[i + 1]! });
  return locks;
}

export class RedisLeaseStore implements LeaseStore, LockRecords {
  private readonly client: Redis;

  /** `state` is the KV store's (RedisKvStore.state): started and closed with it. */
  constructor(private readonly state: RedisState) {
    this.client = state.client;
  }

  // ---- leases ----

  async grantLease(
    tenant: Tenant,
    id: number,
    ttlMs: number,
  ): Promise<{ created: boolean; lease: LeaseInfo; revision: number }> {
    const { reply, floor } = await this.state.run(tenant, (k, epoch) =>
      this.client.leaseGrant(
        ...expiryKeys(k),
        epoch,
        k.record,
        String(this.state.watch.historyEntries),
        k.lease,
        k.lock,
        String(id),
        String(ttlMs),
      ),
    );
    const result = this.state.decoded(tenant, floor, () => {
      const [created, revision, expireAt, grantedTtlMs] = reply as [number, number, number, number];
      return { created: created === 1, lease: { id, grantedTtlMs, expireAt }, revision };
    });
    if (result.created) this.state.scheduled(tenant, result.lease.expireAt);
    return result;
  }

  async renewLease(
    tenant: Tenant,
    id: number,
  ): Promise<{ lease: LeaseInfo | undefined; revision: number } & LeaseLocks> {
    const { reply, floor } = await this.state.run(tenant, (k, epoch) =>
      this.client.leaseRenew(k.meta, k.leaseExp, k.leaseTtl, epoch, k.lease, k.lock, String(id)),
    );
    const result = this.state.decoded(tenant, floor, () => {
      const [renewed, revision, expireAt, grantedTtlMs, held] = reply as [
        number,
        number,
        number,
        number,
        string[],
      ];
      if (renewed !== 1) return { lease: undefined, revision, locks: [] };
      return { lease: { id, grantedTtlMs, expireAt }, revision, locks: decodeHeld(held) };
    });
    if (result.lease) this.state.scheduled(tenant, result.lease.expireAt);
    return result;
  }

  async revokeLease(
    tenant: Tenant,
    id: number,
  ): Promise<{ found: boolean; revision: number } & LeaseLocks> {
    const { reply, floor } = await this.state.run(tenant, (k, epoch) =>
      this.client.leaseRevoke(
        ...expiryKeys(k),
        epoch,
        k.record,
        String(this.state.watch.historyEntries),
        k.lease,
        k.lock,
        String(id),
      ),
    );
    return this.state.decoded(tenant, floor, () => {
      const [found, revision, held] = reply as [number, number, string[]];
      return { found: found === 1, revision, locks: decodeHeld(held) };
    });
  }

  async getLease(
    tenant: Tenant,
    id: number,
    withAttached: boolean,
  ): Promise<{ lease: LeaseInfo | undefined; revision: number }> {
    const { reply, floor } = await this.state.run(tenant, (k, epoch) =>
      this.client.leaseRead(
        k.meta,
        k.leaseExp,
        k.leaseTtl,
        epoch,
        k.lease,
        "g",
        String(id),
        withAttached ? "1" : "0",
      ),
    );
    return this.state.decoded(tenant, floor, () => {
      const [revision, leases] = reply as [number, LeaseReply[]];
      const raw = leases[0];
      return { lease: raw && decodeLease(raw, withAttached), revision };
    });
  }

  async listLeases(tenant: Tenant): Promise<{ leases: LeaseInfo[]; revision: number }> {
    const { reply, floor } = await this.state.run(tenant, (k, epoch) =>
      this.client.leaseRead(k.meta, k.leaseExp, k.leaseTtl, epoch, k.lease, "l", "0", "0"),
    );
    return this.state.decoded(tenant, floor, () => {
      const [revision, raw] = reply as [number, LeaseReply[]];
      const leases = raw.map((lease) => decodeLease(lease, false));
      leases.sort((a, b) => a.id - b.id);
      return { leases, revision };
    });
  }

  // ---- lock records ----

  async grantLock(
    tenant: Tenant,
    grant: LockGrant,
  ): Promise<
    | { kind: "granted"; lock: LockRecord; revision: number }
    | { kind: "lease_not_found"; revision: number }
  > {
    const acquireAt = Math.floor(grant.acquireAt);
    const { reply, floor } = await this.state.run(tenant, (k, epoch) =>
      this.client.lockGrant(
        k.meta,
        k.feed,
        k.fence,
        k.leaseExp,
        k.lockIdx,
        k.lockExp,
        epoch,
        String(this.state.watch.historyEntries),
        k.lease,
        k.lock,
        grant.name,
        grant.owner,
        grant.nonce,
        String(grant.nodeCounter),
        String(acquireAt),
        String(Math.floor(grant.expireAt)),
        String(grant.leaseId),
      ),
    );
    const result = this.state.decoded(tenant, floor, () => {
      const tag = (reply as unknown[])[0];
      if (tag === 1) {
        const [, revision] = reply as [number, number];
        return { kind: "lease_not_found" as const, revision };
      }
      if (tag !== 0) throw new Error(`unknown lock grant reply tag ${String(tag)}`);
      const [, revision, fencingToken, expireAt] = reply as [number, number, number, number];
      const lock: LockRecord = {
        name: grant.name,
        owner: grant.owner,
        nonce: grant.nonce,
        fencingToken,
        acquireAt,
        expireAt,
        leaseId: grant.leaseId,
      };
      return { kind: "granted" as const, lock, revision };
    });
    if (result.kind === "granted" && grant.leaseId === 0) {
      this.state.scheduled(tenant, result.lock.expireAt);
    }
    return result;
  }

  async getLock(
    tenant: Tenant,
    name: string,
  ): Promise<{ lock: LockRecord | undefined; revision: number }> {
    const { reply, floor } = await this.state.run(tenant, (k, epoch) =>
      this.client.lockRead(k.meta, k.leaseExp, k.lockIdx, epoch, k.lock, "g", name, ""),
    );
    return this.state.decoded(tenant, floor, () => {
      const [revision, locks] = reply as [number, LockReply[]];
      const raw = locks[0];
      return { lock: raw && decodeLock(raw), revision };
    });
  }

  async listLocks(
    tenant: Tenant,
    prefix: string,
  ): Promise<{ locks: LockRecord[]; revision: number }> {
    const end = prefixEnd(prefix);
    const low = prefix === "" ? "-" : `[${prefix}`;
    const high = end === undefined ? "+" : `(${end}`;
    const { reply, floor } = await this.state.run(tenant, (k, epoch) =>
      this.client.lockRead(k.meta, k.leaseExp, k.lockIdx, epoch, k.lock, "l", low, high),
    );
    return this.state.decoded(tenant, floor, () => {
      const [revision, locks] = reply as [number, LockReply[]];
      return { locks: locks.map(decodeLock), revision };
    });
  }

  async releaseLock(
    tenant: Tenant,
    name: string,
    token: number,
  ): Promise<{ status: "released" | "not_found" | "not_owner"; revision: number }> {
    const { reply, floor } = await this.state.run(tenant, (k, epoch) =>
      this.client.lockRelease(
        k.meta,
        k.feed,
        k.leaseExp,
        k.lockIdx,
        k.lockExp,
        epoch,
        String(this.state.watch.historyEntries),
        k.lease,
        k.lock,
        name,
        String(token),
      ),
    );
    return this.state.decoded(tenant, floor, () => {
      const [status, revision] = reply as [number, number];
      return { status: lockStatus(status, "released"), revision };
    });
  }

  async extendLock(
    tenant: Tenant,
    name: string,
    token: number,
    expireAt: number,
  ): Promise<{
    status: "extended" | "not_found" | "not_owner";
    lock: LockRecord | undefined;
    revision: number;
  }> {
    const at = Math.floor(expireAt);
    const { reply, floor } = await this.state.run(tenant, (k, epoch) =>
      this.client.lockExtend(
        k.meta,
        k.leaseExp,
        k.lockExp,
        epoch,
        k.lock,
        name,
        String(token),
        String(at),
      ),
    );
    const result = this.state.decoded(tenant, floor, () => {
      const [status, revision, raw] = reply as [number, number, LockReply | undefined];
      const kind = lockStatus(status, "extended");
      return { status: kind, lock: kind === "extended" ? decodeLock(raw!) : undefined, revision };
    });
    if (result.status === "extended") this.state.scheduled(tenant, at);
    return result;
  }
}

/** {id, grantedTtl, expireAt, keys | nil, locks | nil} */
type LeaseReply = [number, number, number, (string[] | null)?, (string[] | null)?];

function decodeLease(raw: LeaseReply, withAttached: boolean): LeaseInfo {
  const [id, grantedTtlMs, expireAt, keys, locks] = raw;
  if (!withAttached) return { id, grantedTtlMs, expireAt };
  return { id, grantedTtlMs, expireAt, keys: keys ?? [], locks: locks ?? [] };
}

/** Reply status 0 (the success word), 1 not found, 2 not owner. */
function lockStatus<T extends string>(status: number, ok: T): T | "not_found" | "not_owner" {
  switch (status) {
    case 0:
      return ok;
    case 1:
      return "not_found";
    case 2:
      return "not_owner";
    default:
      throw new Error(`unknown lock reply status ${status}`);
  }
}
