/**
 * LeaseService handlers. KeepAlive answers each request message with one
 * response, for as many leases as the client sends.
 */
import type { ServiceImpl } from "@connectrpc/connect";
import type { Leases } from "../core/leases.js";
import type { LeaseInfo } from "../core/model.js";
import type { LeaseService } from "../gen/latchkey/v1/lease_pb.js";
import { durationMs, header, int64, toDuration } from "./convert.js";
import { tenantOf } from "./pipeline.js";

const remaining = (lease: LeaseInfo) => toDuration(Math.max(0, lease.expireAt - Date.now()));

export function createLeaseService(leases: Leases): ServiceImpl<typeof LeaseService> {
  const renew = async (tenant: string, leaseId: bigint) => {
    const id = int64(leaseId, "lease_id");
    const { lease, revision } = await leases.renew(tenant, id);
    return { header: header(revision), leaseId, ttl: toDuration(lease ? lease.grantedTtlMs : 0) };
  };

  return {
    async grant(req, ctx) {
      const { lease, revision } = await leases.grant(
        tenantOf(ctx),
        durationMs(req.ttl, "ttl"),
        int64(req.leaseId, "lease_id"),
      );
      return {
        header: header(revision),
        leaseId: BigInt(lease.id),
        ttl: toDuration(lease.grantedTtlMs),
      };
    },

    async *keepAlive(requests, ctx) {
      const tenant = tenantOf(ctx);
      for await (const req of requests) yield await renew(tenant, req.leaseId);
    },

    async renew(req, ctx) {
      return renew(tenantOf(ctx), req.leaseId);
    },

    async revoke(req, ctx) {
      const { found, revision } = await leases.revoke(
        tenantOf(ctx),
        int64(req.leaseId, "lease_id"),
      );
      return { header: header(revision), found };
    },

    async timeToLive(req, ctx) {
      const { lease, revision } = await leases.timeToLive(
        tenantOf(ctx),
        int64(req.leaseId, "lease_id"),
        req.withKeys,
      );
      return {
        header: header(revision),
        leaseId: BigInt(lease.id),
        ttlRemaining: remaining(lease),
        grantedTtl: toDuration(lease.grantedTtlMs),
        keys: [...(lease.keys ?? [])],
        locks: [...(lease.locks ?? [])],
      };
    },

    async list(_req, ctx) {
      const { leases: all, revision } = await leases.list(tenantOf(ctx));
      return {
        header: header(revision),
        leases: all.map((lease) => ({
          leaseId: BigInt(lease.id),
          ttlRemaining: remaining(lease),
          grantedTtl: toDuration(lease.grantedTtlMs),
        })),
      };
    },
  };
}
