/**
 * Domain types of Latchkey. They mirror the contract (../shared/spec/API.md)
 * but carry no transport or generated-code types: integers are JS numbers
 * (revisions, versions, lease ids and tokens stay below 2^53) and times are
 * milliseconds since the Unix epoch.
 */

/** A tenant name; every key, snapshot, lease and lock belongs to one. */
export type Tenant = string;

/** A key with its metadata, as etcd's mvccpb.KeyValue. */
export interface KeyValue {
  readonly key: string;
  readonly value: Uint8Array;
  readonly createRevision: number;
  readonly modRevision: number;
  /** 1 on create, +1 on each put; a deleted or expired key starts again at 1. */
  readonly version: number;
  /** 0 = none. */
  readonly leaseId: number;
  /** Expiry in ms since the epoch; undefined = never. */
  readonly expireAt: number | undefined;
}

/** A test-and-set condition on one key. */
export type Precondition =
  | { readonly kind: "must_not_exist" }
  | { readonly kind: "must_exist" }
  | { readonly kind: "version"; readonly version: number }
  | { readonly kind: "mod_revision"; readonly modRevision: number };

/** A fencing check: `token` must be >= the newest token granted for `lockName`. */
export interface Fence {
  readonly lockName: string;
  readonly token: number;
}

/** A key range: [start, end) in bytewise UTF-8 order; `end` undefined = unbounded. */
export interface KeyRange {
  readonly start: string;
  readonly end: string | undefined;
}

export type CompareOperator = "equal" | "not_equal" | "greater" | "less";

export type CompareTarget =
  | { readonly kind: "version"; readonly value: number }
  | { readonly kind: "mod_revision"; readonly value: number }
  | { readonly kind: "create_revision"; readonly value: number }
  | { readonly kind: "lease_id"; readonly value: number }
  | { readonly kind: "value"; readonly value: Uint8Array }
  | { readonly kind: "exists"; readonly value: boolean };

export interface Compare {
  readonly key: string;
  readonly operator: CompareOperator;
  readonly target: CompareTarget;
}

/** A range read, already validated and resolved to bounds and a cursor. */
export interface RangeQuery {
  readonly range: KeyRange;
  /** Exclusive cursor: only keys strictly after it (the page token's key). */
  readonly after: string | undefined;
  /** Page size, >= 1. */
  readonly limit: number;
  readonly keysOnly: boolean;
  readonly countOnly: boolean;
}

export interface RangeResult {
  readonly kvs: KeyValue[];
  /** Live keys in the range from the cursor on. */
  readonly count: number;
  /** Whether keys follow the last one returned. */
  readonly more: boolean;
}

/** One operation of an atomic write plan. */
export type TxnOp =
  | {
      readonly kind: "put";
      readonly key: string;
      readonly value: Uint8Array;
      /** Relative TTL in ms; undefined = none. */
      readonly ttlMs: number | undefined;
      readonly leaseId: number;
      readonly prevKv: boolean;
    }
  | { readonly kind: "delete"; readonly key: string; readonly prevKv: boolean }
  | { readonly kind: "delete_range"; readonly range: KeyRange; readonly prevKv: boolean }
  | { readonly kind: "get"; readonly key: string }
  | { readonly kind: "range"; readonly query: RangeQuery };

export type TxnOpResult =
  | { readonly kind: "put"; readonly kv: KeyValue; readonly prevKv: KeyValue | undefined }
  | { readonly kind: "delete"; readonly deleted: number; readonly prevKvs: KeyValue[] }
  | { readonly kind: "get"; readonly kv: KeyValue | undefined }
  | { readonly kind: "range"; readonly result: RangeResult };

/**
 * An atomic write: fences, then compares, then one branch, all at one
 * revision. Put, Delete and Txn are all expressed as a plan.
 */
export interface TxnPlan {
  readonly fences: readonly Fence[];
  readonly compares: readonly Compare[];
  readonly success: readonly TxnOp[];
  readonly failure: readonly TxnOp[];
}

export type TxnOutcome =
  | {
      readonly kind: "done";
      readonly succeeded: boolean;
      readonly results: TxnOpResult[];
      readonly revision: number;
    }
  | {
      readonly kind: "fence_stale";
      readonly lockName: string;
      /** The newest token granted for the lock. */
      readonly currentToken: number;
      readonly revision: number;
    }
  | { readonly kind: "lease_not_found"; readonly leaseId: number; readonly revision: number };

/** Kinds of change events (the contract's EventKind). */
export type EventKind =
  | "put"
  | "delete"
  | "expire"
  | "snapshot_saved"
  | "snapshot_deleted"
  | "execution_suspended"
  | "execution_resumed"
  | "lock_acquired"
  | "lock_released"
  | "lock_expired";

/** Reserved key prefixes of non-KV events. */
export const SNAPSHOT_EVENT_PREFIX = "/snapshots/";
export const LOCK_EVENT_PREFIX = "/locks/";

/** The state of a lock as carried by lock events and the LockService. */
export interface LockInfo {
  readonly name: string;
  readonly owner: string;
  readonly fencingToken: number;
  readonly acquireAt: number;
  readonly expireAt: number;
  readonly leaseId: number;
}

/** A lease: a liveness session that keys and locks can be attached to. */
export interface LeaseInfo {
  readonly id: number;
  readonly grantedTtlMs: number;
  readonly expireAt: number;
  /** Attached keys and locks, when asked for. */
  readonly keys?: readonly string[] | undefined;
  readonly locks?: readonly string[] | undefined;
}

/** A lock held on the lock nodes, as the state store records it. */
export interface LockRecord extends LockInfo {
  /** The random value that identifies this grant on the lock nodes. */
  readonly nonce: string;
}

/** A change, as recorded in a tenant's changefeed. */
export interface ChangeEvent {
  readonly kind: EventKind;
  /** The key after the change; for deletions the key with version 0 and no value. */
  readonly kv: KeyValue;
  readonly prevKv: KeyValue | undefined;
  /** Snapshot events: the snapshot metadata, kept opaque to the feed. */
  readonly snapshot?: SnapshotMeta | undefined;
  readonly lock?: LockInfo | undefined;
}

/** Every change of one revision: one atomic unit of the changefeed. */
export interface FeedEntry {
  readonly revision: number;
  readonly events: readonly ChangeEvent[];
}

export type ExecutionStatus =
  | "pending"
  | "running"
  | "suspended"
  | "completed"
  | "failed"
  | "cancelled";

export interface Suspension {
  readonly reason: string;
  readonly data: Uint8Array;
  readonly suspendAt: number;
  readonly expireAt: number | undefined;
}

/** Snapshot metadata (everything but the state and input bytes). */
export interface SnapshotMeta {
  readonly executionId: string;
  readonly sequence: number;
  readonly contentType: string;
  readonly status: ExecutionStatus;
  readonly metadata: Readonly<Record<string, string>>;
  readonly createAt: number;
  readonly updateAt: number;
  readonly expireAt: number | undefined;
  readonly eventSeq: number;
  readonly stateSize: number;
  readonly suspension: Suspension | undefined;
}
