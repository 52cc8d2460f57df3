/**
 * The only place that turns proto messages into domain values and back.
 * int64 fields arrive as bigint and are checked to fit a JS number.
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { Duration, Timestamp } from "@bufbuild/protobuf/wkt";
import { invalidArgument, Reason } from "../core/errors.js";
import type {
  ChangeEvent,
  EventKind as CoreEventKind,
  ExecutionStatus as CoreExecutionStatus,
  Fence as CoreFence,
  KeyValue as CoreKeyValue,
  Precondition as CorePrecondition,
  LockInfo,
  SnapshotMeta,
} from "../core/model.js";
import type { CheckpointInfo, ExecutionEvent as CoreExecutionEvent } from "../core/ports.js";
import type { Fence, KeyValueSchema, ResponseHeaderSchema } from "../gen/latchkey/v1/common_pb.js";
import type { Precondition } from "../gen/latchkey/v1/kv_pb.js";
import type { LockSchema } from "../gen/latchkey/v1/lock_pb.js";
import {
  type CheckpointSchema,
  type ExecutionEventSchema,
  ExecutionStatus,
  type SnapshotSchema,
} from "../gen/latchkey/v1/snapshot_pb.js";
import { EventKind, type EventSchema } from "../gen/latchkey/v1/watch_pb.js";

/** A signed int64 field as a safe JS integer, or INVALID_ARGUMENT naming the field. */
export function int64(value: bigint, field: string): number {
  if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < BigInt(Number.MIN_SAFE_INTEGER)) {
    throw invalidArgument(Reason.INVALID_ARGUMENT, `${field} is out of range (|x| < 2^53)`, {
      field,
    });
  }
  return Number(value);
}

/** A Duration in milliseconds (possibly fractional: core checks whole ms). */
export function durationMs(duration: Duration | undefined, field: string): number | undefined {
  if (duration === undefined) return undefined;
  if (duration.seconds < 0n || duration.nanos < 0) {
    throw invalidArgument(Reason.INVALID_TTL, `${field} must not be negative`, { field });
  }
  if (duration.nanos > 999_999_999) {
    throw invalidArgument(Reason.INVALID_TTL, `${field}.nanos must be below 1e9`, { field });
  }
  return int64(duration.seconds, field) * 1000 + duration.nanos / 1e6;
}

export function toDuration(
  ms: number,
): MessageInitShape<typeof import("@bufbuild/protobuf/wkt").DurationSchema> {
  const whole = Math.max(0, Math.round(ms));
  return { seconds: BigInt(Math.floor(whole / 1000)), nanos: (whole % 1000) * 1_000_000 };
}

export function toTimestamp(
  ms: number,
): MessageInitShape<typeof import("@bufbuild/protobuf/wkt").TimestampSchema> {
  return { seconds: BigInt(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 };
}

export function timestampMs(timestamp: Timestamp | undefined, field: string): number | undefined {
  if (timestamp === undefined) return undefined;
  if (timestamp.nanos < 0 || timestamp.nanos > 999_999_999) {
    throw invalidArgument(Reason.INVALID_ARGUMENT, `${field}.nanos must be in [0, 1e9)`, { field });
  }
  return int64(timestamp.seconds, field) * 1000 + Math.floor(timestamp.nanos / 1e6);
}

export function header(revision: number): MessageInitShape<typeof ResponseHeaderSchema> {
  return { revision: BigInt(revision) };
}

export function toKeyValue(kv: CoreKeyValue): MessageInitShape<typeof KeyValueSchema> {
  return {
    key: kv.key,
    value: kv.value,
    createRevision: BigInt(kv.createRevision),
    modRevision: BigInt(kv.modRevision),
    version: BigInt(kv.version),
    leaseId: BigInt(kv.leaseId),
    expireTime: kv.expireAt === undefined ? undefined : toTimestamp(kv.expireAt),
  };
}

export function fromFence(fence: Fence | undefined, field: string): CoreFence | undefined {
  if (fence === undefined) return undefined;
  return { lockName: fence.lockName, token: int64(fence.token, `${field}.token`) };
}

export function fromPrecondition(
  p: Precondition | undefined,
  field: string,
): CorePrecondition | undefined {
  if (p === undefined) return undefined;
  const c = p.condition;
  switch (c.case) {
    case undefined:
      return undefined;
    case "mustNotExist":
    case "mustExist":
      if (!c.value) {
        throw invalidArgument(
          Reason.INVALID_ARGUMENT,
          `${field}.${c.case === "mustExist" ? "must_exist" : "must_not_exist"} must be true when set`,
          {
            field,
          },
        );
      }
      return { kind: c.case === "mustExist" ? "must_exist" : "must_not_exist" };
    case "version":
      return { kind: "version", version: int64(c.value, `${field}.version`) };
    case "modRevision":
      return { kind: "mod_revision", modRevision: int64(c.value, `${field}.mod_revision`) };
  }
}

const EVENT_KINDS: Readonly<Record<CoreEventKind, EventKind>> = {
  put: EventKind.PUT,
  delete: EventKind.DELETE,
  expire: EventKind.EXPIRE,
  snapshot_saved: EventKind.SNAPSHOT_SAVED,
  snapshot_deleted: EventKind.SNAPSHOT_DELETED,
  execution_suspended: EventKind.EXECUTION_SUSPENDED,
  execution_resumed: EventKind.EXECUTION_RESUMED,
  lock_acquired: EventKind.LOCK_ACQUIRED,
  lock_released: EventKind.LOCK_RELEASED,
  lock_expired: EventKind.LOCK_EXPIRED,
};
const CORE_EVENT_KINDS = new Map<EventKind, CoreEventKind>(
  Object.entries(EVENT_KINDS).map(([core, wire]) => [wire, core as CoreEventKind]),
);

export function fromEventKind(kind: EventKind, field: string): CoreEventKind {
  const core = CORE_EVENT_KINDS.get(kind);
  if (core === undefined) {
    throw invalidArgument(Reason.INVALID_ARGUMENT, `${field}: ${kind} is not a known event kind`, {
      field,
    });
  }
  return core;
}

const STATUSES: Readonly<Record<CoreExecutionStatus, ExecutionStatus>> = {
  pending: ExecutionStatus.PENDING,
  running: ExecutionStatus.RUNNING,
  suspended: ExecutionStatus.SUSPENDED,
  completed: ExecutionStatus.COMPLETED,
  failed: ExecutionStatus.FAILED,
  cancelled: ExecutionStatus.CANCELLED,
};
const CORE_STATUSES = new Map<ExecutionStatus, CoreExecutionStatus>(
  Object.entries(STATUSES).map(([core, wire]) => [wire, core as CoreExecutionStatus]),
);

export function toExecutionStatus(status: CoreExecutionStatus): ExecutionStatus {
  return STATUSES[status];
}

/** A wire status as a domain status; UNSPECIFIED is undefined, unknown values are INVALID_ARGUMENT. */
export function fromExecutionStatus(
  status: ExecutionStatus,
  field: string,
): CoreExecutionStatus | undefined {
  if (status === ExecutionStatus.EXECUTION_STATUS_UNSPECIFIED) return undefined;
  const core = CORE_STATUSES.get(status);
  if (core === undefined) {
    throw invalidArgument(
      Reason.INVALID_ARGUMENT,
      `${field}: ${status} is not a known execution status`,
      { field },
    );
  }
  return core;
}

export function toLock(lock: LockInfo): MessageInitShape<typeof LockSchema> {
  return {
    name: lock.name,
    owner: lock.owner,
    fencingToken: BigInt(lock.fencingToken),
    acquireTime: toTimestamp(lock.acquireAt),
    expireTime: toTimestamp(lock.expireAt),
    leaseId: BigInt(lock.leaseId),
  };
}

/** Snapshot metadata (state and input are added by the callers that return them). */
export function toSnapshotMeta(meta: SnapshotMeta): MessageInitShape<typeof SnapshotSchema> {
  const s = meta.suspension;
  return {
    executionId: meta.executionId,
    sequence: BigInt(meta.sequence),
    contentType: meta.contentType,
    status: toExecutionStatus(meta.status),
    metadata: { ...meta.metadata },
    createTime: toTimestamp(meta.createAt),
    updateTime: toTimestamp(meta.updateAt),
    expireTime: meta.expireAt === undefined ? undefined : toTimestamp(meta.expireAt),
    eventSeq: BigInt(meta.eventSeq),
    stateSize: BigInt(meta.stateSize),
    suspension: s && {
      reason: s.reason,
      data: s.data,
      suspendTime: toTimestamp(s.suspendAt),
      expireTime: s.expireAt === undefined ? undefined : toTimestamp(s.expireAt),
    },
  };
}

export function toEvent(event: ChangeEvent): MessageInitShape<typeof EventSchema> {
  return {
    kind: EVENT_KINDS[event.kind],
    kv: toKeyValue(event.kv),
    prevKv: event.prevKv && toKeyValue(event.prevKv),
    snapshot: event.snapshot && toSnapshotMeta(event.snapshot),
    lock: event.lock && toLock(event.lock),
  };
}

/** A checkpoint's metadata. */
export function toCheckpoint(
  checkpoint: CheckpointInfo,
): MessageInitShape<typeof CheckpointSchema> {
  return {
    name: checkpoint.name,
    sequence: BigInt(checkpoint.sequence),
    createTime: toTimestamp(checkpoint.createAt),
    status: toExecutionStatus(checkpoint.status),
    eventSeq: BigInt(checkpoint.eventSeq),
    stateSize: BigInt(checkpoint.stateSize),
  };
}

/** One event of an execution's log. */
export function toExecutionEvent(
  event: CoreExecutionEvent,
): MessageInitShape<typeof ExecutionEventSchema> {
  return {
    seq: BigInt(event.seq),
    type: event.type,
    data: event.data,
    time: toTimestamp(event.time),
  };
}
