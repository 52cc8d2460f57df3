/**
 * Leases (etcd's model): liveness sessions with a TTL that keys and locks
 * can be attached to. Renewing a lease also extends, on the lock nodes, the
 * locks held under it; revoking one releases them there.
 */
import { randomInt } from "node:crypto";
import { Reason, StateError } from "./errors.js";
import type { Limits } from "./limits.js";
import type { LeaseInfo, Tenant } from "./model.js";
import type { LeaseLocks, LeaseStore, LockNodes } from "./ports.js";
import { checkTtl } from "./validate.js";

/**
 * Server-chosen lease ids are random in [1, 2^48) (node's randomInt range):
 * positive and far below 2^53, so every client language holds them exactly.
 */
const MAX_RANDOM_LEASE_ID = 2 ** 48;

export class Leases {
  constructor(
    private readonly store: LeaseStore,
    private readonly nodes: LockNodes,
    private readonly limits: Limits,
    private readonly onError: (error: unknown) => void,
  ) {}

  async grant(
    tenant: Tenant,
    ttlMs: number | undefined,
    requestedId: number,
  ): Promise<{ lease: LeaseInfo; revision: number }> {
    if (ttlMs === undefined) {
      throw new StateError("invalid_argument", Reason.INVALID_TTL, "ttl is required", {
        field: "ttl",
      });
    }
    checkTtl(ttlMs, "ttl", this.limits);
    if (requestedId < 0 || !Number.isSafeInteger(requestedId)) {
      throw new StateError(
        "invalid_argument",
        Reason.INVALID_ARGUMENT,
        "lease_id must be positive and below 2^53",
        {
          field: "lease_id",
        },
      );
    }
    if (requestedId !== 0) {
      const { created, lease, revision } = await this.store.grantLease(tenant, requestedId, ttlMs);
      if (!created) {
        throw new StateError(
          "aborted",
          Reason.LEASE_EXISTS,
          `lease ${requestedId} is already alive`,
          {
            lease_id: String(requestedId),
          },
        );
      }
      return { lease, revision };
    }
    // Random ids: a collision with a live lease is retried, never reported.
    for (;;) {
      const id = randomInt(1, MAX_RANDOM_LEASE_ID);
      const { created, lease, revision } = await this.store.grantLease(tenant, id, ttlMs);
      if (created) return { lease, revision };
    }
  }

  /** Renews a lease; `lease` undefined when it is unknown or expired (answered as ttl 0). */
  async renew(
    tenant: Tenant,
    id: number,
  ): Promise<{ lease: LeaseInfo | undefined; revision: number }> {
    if (id <= 0)
      return { lease: undefined, revision: (await this.store.listLeases(tenant)).revision };
    const { lease, revision, locks } = await this.store.renewLease(tenant, id);
    if (lease) await this.extendLocks(tenant, lease, locks);
    return { lease, revision };
  }

  async revoke(tenant: Tenant, id: number): Promise<{ found: boolean; revision: number }> {
    const { found, revision, locks } = await this.store.revokeLease(tenant, id);
    await Promise.all(
      locks.map((l) => this.nodes.release(tenant, l.name, l.nonce).catch(this.onError)),
    );
    return { found, revision };
  }

  async timeToLive(
    tenant: Tenant,
    id: number,
    withAttached: boolean,
  ): Promise<{ lease: LeaseInfo; revision: number }> {
    const { lease, revision } = await this.store.getLease(tenant, id, withAttached);
    if (!lease) {
      throw new StateError("not_found", Reason.LEASE_NOT_FOUND, `lease ${id} not found`, {
        lease_id: String(id),
      });
    }
    return { lease, revision };
  }

  list(tenant: Tenant): Promise<{ leases: LeaseInfo[]; revision: number }> {
    return this.store.listLeases(tenant);
  }

  /**
   * Locks held under a lease live as long as it does: extend them on the
   * nodes too. A lock the nodes lost stays recorded until the lease ends, but
   * its fencing token is superseded by the next grant, so its holder's fenced
   * writes are refused.
   */
  private async extendLocks(
    tenant: Tenant,
    lease: LeaseInfo,
    held: LeaseLocks["locks"],
  ): Promise<void> {
    await Promise.all(
      held.map((lock) =>
        this.nodes.extend(tenant, lock.name, lock.nonce, lease.grantedTtlMs).catch(this.onError),
      ),
    );
  }
}
