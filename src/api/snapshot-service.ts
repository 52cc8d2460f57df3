/**
 * SnapshotService handlers: proto in, domain call, proto out. Rules, limits
 * and errors are the domain's (core/snapshots.ts); conversions are in
 * convert.ts. Only Load, Restore and Resume answer with the state and input.
 */
import type { ServiceImpl } from "@connectrpc/connect";
import type { ExecutionStatus as CoreExecutionStatus } from "../core/model.js";
import type { Snapshots, SnapshotView } from "../core/snapshots.js";
import { argumentError } from "../core/validate.js";
import type { SnapshotService } from "../gen/latchkey/v1/snapshot_pb.js";
import {
  durationMs,
  fromExecutionStatus,
  header,
  int64,
  timestampMs,
  toCheckpoint,
  toExecutionEvent,
  toSnapshotMeta,
} from "./convert.js";
import { tenantOf } from "./pipeline.js";

/** A snapshot with its state and input. */
function toSnapshot(view: SnapshotView) {
  return { ...toSnapshotMeta(view.meta), state: view.state, input: view.input };
}

export function createSnapshotService(snapshots: Snapshots): ServiceImpl<typeof SnapshotService> {
  return {
    async save(req, ctx) {
      const out = await snapshots.save(tenantOf(ctx), {
        executionId: req.executionId,
        sequence: int64(req.sequence, "sequence"),
        state: req.state,
        contentType: req.contentType,
        status: fromExecutionStatus(req.status, "status"),
        metadata: req.metadata,
        ttlMs: durationMs(req.ttl, "ttl"),
        eventSeq: int64(req.eventSeq, "event_seq"),
      });
      return { header: header(out.revision), snapshot: toSnapshotMeta(out.meta) };
    },

    async load(req, ctx) {
      const out = await snapshots.load(tenantOf(ctx), req.executionId);
      return { header: header(out.revision), snapshot: toSnapshot(out) };
    },

    async patch(req, ctx) {
      const out = await snapshots.patch(
        tenantOf(ctx),
        req.executionId,
        req.mergePatch,
        req.expectedSequence === undefined
          ? undefined
          : int64(req.expectedSequence, "expected_sequence"),
      );
      return { header: header(out.revision), snapshot: toSnapshotMeta(out.meta) };
    },

    async delete(req, ctx) {
      const out = await snapshots.delete(tenantOf(ctx), req.executionId, req.purge);
      return { header: header(out.revision), deleted: out.deleted };
    },

    async list(req, ctx) {
      const statuses = req.status.map((status, i): CoreExecutionStatus => {
        const core = fromExecutionStatus(status, `status[${i}]`);
        if (core === undefined) {
          throw argumentError(`status[${i}]`, "a status filter must name a status");
        }
        return core;
      });
      const out = await snapshots.list(tenantOf(ctx), {
        statuses,
        updatedAfter: timestampMs(req.updatedAfter, "updated_after"),
        updatedBefore: timestampMs(req.updatedBefore, "updated_before"),
        pageSize: req.pageSize,
        pageToken: req.pageToken,
      });
      return {
        header: header(out.revision),
        snapshots: out.snapshots.map(toSnapshotMeta),
        nextPageToken: out.nextPageToken,
      };
    },

    async checkpoint(req, ctx) {
      const out = await snapshots.checkpoint(tenantOf(ctx), req.executionId, req.name);
      return { header: header(out.revision), checkpoint: toCheckpoint(out.checkpoint) };
    },

    async restore(req, ctx) {
      const out = await snapshots.restore(tenantOf(ctx), req.executionId, req.name);
      return { header: header(out.revision), snapshot: toSnapshot(out) };
    },

    async listCheckpoints(req, ctx) {
      const out = await snapshots.listCheckpoints(tenantOf(ctx), req.executionId);
      return { header: header(out.revision), checkpoints: out.checkpoints.map(toCheckpoint) };
    },

    async suspend(req, ctx) {
      const out = await snapshots.suspend(tenantOf(ctx), {
        executionId: req.executionId,
        reason: req.reason,
        data: req.data,
        expireAt: timestampMs(req.expireTime, "expire_time"),
      });
      return {
        header: header(out.revision),
        resumeToken: out.token,
        snapshot: toSnapshotMeta(out.meta),
      };
    },

    async resume(req, ctx) {
      const out = await snapshots.resume(tenantOf(ctx), req.resumeToken, req.input);
      return { header: header(out.revision), snapshot: toSnapshot(out) };
    },

    async appendEvents(req, ctx) {
      const out = await snapshots.appendEvents(tenantOf(ctx), {
        executionId: req.executionId,
        events: req.events.map((e) => ({ type: e.type, data: e.data })),
        expectedLastSeq:
          req.expectedLastSeq === undefined
            ? undefined
            : int64(req.expectedLastSeq, "expected_last_seq"),
        idempotencyKey: req.idempotencyKey,
      });
      return {
        header: header(out.revision),
        firstSeq: BigInt(out.firstSeq),
        lastSeq: BigInt(out.lastSeq),
      };
    },

    async readEvents(req, ctx) {
      const out = await snapshots.readEvents(
        tenantOf(ctx),
        req.executionId,
        int64(req.afterSeq, "after_seq"),
        req.limit,
      );
      return {
        header: header(out.revision),
        events: out.events.map(toExecutionEvent),
        lastSeq: BigInt(out.lastSeq),
      };
    },
  };
}
