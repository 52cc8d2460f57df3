/**
 * LockService handlers. Acquire waits at most `wait_timeout`, and never past
 * the call's deadline: it answers `acquired = false` a little before it.
 */
import type { ServiceImpl } from "@connectrpc/connect";
import type { Locks } from "../core/locks.js";
import {
  ExtendResponse_Status,
  type LockService,
  ReleaseResponse_Status,
} from "../gen/latchkey/v1/lock_pb.js";
import { durationMs, header, int64, toLock } from "./convert.js";
import { effectiveDeadlineMs, type PipelineOptions, tenantOf } from "./pipeline.js";

const RELEASE = {
  released: ReleaseResponse_Status.RELEASED,
  not_found: ReleaseResponse_Status.NOT_FOUND,
  not_owner: ReleaseResponse_Status.NOT_OWNER,
} as const;

const EXTEND = {
  extended: ExtendResponse_Status.EXTENDED,
  not_found: ExtendResponse_Status.NOT_FOUND,
  not_owner: ExtendResponse_Status.NOT_OWNER,
} as const;

export function createLockService(
  locks: Locks,
  deadlines: Pick<PipelineOptions, "defaultDeadlineMs" | "maxDeadlineMs">,
): ServiceImpl<typeof LockService> {
  return {
    async acquire(req, ctx) {
      const result = await locks.acquire(
        tenantOf(ctx),
        {
          name: req.name,
          owner: req.owner,
          ttlMs: durationMs(req.ttl, "ttl"),
          leaseId: int64(req.leaseId, "lease_id"),
          waitMs: durationMs(req.waitTimeout, "wait_timeout") ?? 0,
        },
        ctx.signal,
        Date.now() + effectiveDeadlineMs(ctx, deadlines),
      );
      return {
        header: header(result.revision),
        acquired: result.acquired,
        lock: result.lock && toLock(result.lock),
      };
    },

    async extend(req, ctx) {
      const out = await locks.extend(
        tenantOf(ctx),
        req.name,
        int64(req.fencingToken, "fencing_token"),
        durationMs(req.ttl, "ttl"),
      );
      return {
        header: header(out.revision),
        status: EXTEND[out.status],
        lock: out.lock && toLock(out.lock),
      };
    },

    async release(req, ctx) {
      const out = await locks.release(
        tenantOf(ctx),
        req.name,
        int64(req.fencingToken, "fencing_token"),
      );
      return { header: header(out.revision), status: RELEASE[out.status] };
    },

    async describe(req, ctx) {
      const { lock, revision } = await locks.describe(tenantOf(ctx), req.name);
      return { header: header(revision), held: lock !== undefined, lock: lock && toLock(lock) };
    },

    async list(req, ctx) {
      const { locks: held, revision } = await locks.list(tenantOf(ctx), req.prefix);
      return { header: header(revision), locks: held.map(toLock) };
    },
  };
}
