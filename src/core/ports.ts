/**
 * Interfaces the domain needs from its adapters. They belong to core (the
 * consumer), as etcd's lease.RangeDeleter does; store/, lock/ and watch/
 * implement them and server.ts wires them.
 */
import type {
  ChangeEvent,
  EventKind,
  ExecutionStatus,
  FeedEntry,
  KeyValue,
  LeaseInfo,
  LockRecord,
  RangeQuery,
  RangeResult,
  SnapshotMeta,
  Suspension,
  Tenant,
  TxnOutcome,
  TxnPlan,
} from "./model.js";

/** What one sweep step expired. */
export interface SweepResult {
  /** Events written (keys, leases' keys and locks, lock records). */
  readonly expired: number;
  /** When the next key, lease or lock is due (ms epoch). */
  readonly nextExpireAt: number | undefined;
  /** Locks that ended (their lease or TTL ran out): their holds on the lock nodes are freed next. */
  readonly endedLocks?: readonly { readonly name: string; readonly nonce: string }[];
}

/** Start, stop and readiness of an adapter that holds connections or timers. */
export interface Lifecycle {
  /** Connects, loads scripts and checks the backend; throws when unusable. */
  start(): Promise<void>;
  /** Releases every connection and timer; idempotent. */
  close(): Promise<void>;
  /** True when the backend is reachable and ready to serve (scripts loaded). */
  ready(): Promise<boolean>;
}

/**
 * Key-value storage with revisions. Every method is atomic on its own; every
 * mutation advances the tenant revision by one and records its events in the
 * tenant's changefeed in the same atomic step. Implementations throw
 * StateError (unavailable, data_loss) for backend faults, never raw errors.
 */
export interface KvStore extends Lifecycle {
  /** Reads keys at one point in time; expired keys are undefined. */
  get(
    tenant: Tenant,
    keys: readonly string[],
  ): Promise<{ kvs: (KeyValue | undefined)[]; revision: number }>;

  /** Reads one page of a range at one point in time. */
  range(tenant: Tenant, query: RangeQuery): Promise<RangeResult & { revision: number }>;

  /**
   * Applies a plan atomically: fences, compares, then the chosen branch, at one
   * new revision if the branch changes anything. Keys whose TTL has passed count
   * as absent; the store expires them (EXPIRE events) before the plan's change.
   */
  txn(tenant: Tenant, plan: TxnPlan): Promise<TxnOutcome>;

  /**
   * Deletes up to `limit` keys whose TTL has passed, with one EXPIRE event each.
   * Safe to run concurrently from several replicas: each key expires once.
   * Returns how many expired and when the next key is due (ms epoch).
   */
  sweepExpired(tenant: Tenant, limit: number): Promise<SweepResult>;

  /** Tenants that hold or held data, for background sweeps. */
  tenants(): Promise<Tenant[]>;

  /** Registers a callback told when a write on this replica sets an expiry. */
  onExpiryScheduled(listener: (tenant: Tenant, expireAt: number) => void): void;
}

/**
 * A tenant's changefeed: the ordered record of every revision's events,
 * written by the store in the same atomic step as the change.
 */
export interface ChangeFeed {
  /**
   * Entries with revision >= `fromRevision`, oldest first, at most `limit`.
   * `oldestRevision` is the oldest retained (0 when nothing was ever
   * written); `revision` is the tenant's current revision.
   */
  read(
    tenant: Tenant,
    fromRevision: number,
    limit: number,
  ): Promise<{ entries: FeedEntry[]; oldestRevision: number; revision: number }>;

  /**
   * Waits until the tenant has entries after `afterRevision` (or `blockMs`
   * pass, or `signal` aborts) and returns up to `limit` of them, oldest first;
   * an empty array on timeout. Each replica calls it from ONE reader per tenant.
   */
  tail(
    tenant: Tenant,
    afterRevision: number,
    limit: number,
    blockMs: number,
    signal: AbortSignal,
  ): Promise<FeedEntry[]>;
}

/** What a watcher asked to see. */
export interface WatchFilter {
  /** One key, or (with `prefixEnd`) every key in [key, prefixEnd); `all` = everything. */
  readonly key: string;
  readonly isPrefix: boolean;
  readonly prefixEnd: string | undefined;
  /** Kinds to deliver; undefined = all. */
  readonly kinds: ReadonlySet<EventKind> | undefined;
  readonly prevKv: boolean;
}

/** One message of a watch: the matching events of one revision, or a progress mark. */
export type WatchMessage =
  | { readonly kind: "events"; readonly revision: number; readonly events: readonly ChangeEvent[] }
  | { readonly kind: "progress"; readonly revision: number };

export interface WatchRequest {
  /** First revision to deliver; 0 = after the current revision. */
  readonly fromRevision: number;
  readonly filter: WatchFilter;
  /** Idle interval between progress messages; undefined = none (but the first). */
  readonly progressIntervalMs: number | undefined;
}

/**
 * Live, ordered, gap-free change streams with resumption. Implemented by
 * the fan-out hub (src/watch/), which reads each tenant's feed once per
 * replica. The iterable ends with a StateError: COMPACTED (start below the
 * retained history), SLOW_CONSUMER or BACKEND_UNAVAILABLE (both with
 * `resume_revision` metadata); it stops when `signal` aborts.
 */
export interface ChangeStream {
  watch(tenant: Tenant, request: WatchRequest, signal: AbortSignal): AsyncIterable<WatchMessage>;
}

/** What a lease revocation, renewal or expiry means for the locks held under it. */
export interface LeaseLocks {
  readonly locks: readonly { readonly name: string; readonly nonce: string }[];
}

/**
 * Leases in the state store. Grant and renew change no revision; revoking
 * (and the sweeper expiring) a lease deletes its keys with EXPIRE events and
 * its lock records with LOCK_EXPIRED events at one revision (only if there
 * was anything to delete).
 */
export interface LeaseStore {
  /** Creates lease `id`; `created` false when it is already alive (nothing changes). */
  grantLease(
    tenant: Tenant,
    id: number,
    ttlMs: number,
  ): Promise<{ created: boolean; lease: LeaseInfo; revision: number }>;
  /** Renews a live lease to its granted TTL (and the expiry of its locks); undefined when gone. */
  renewLease(
    tenant: Tenant,
    id: number,
  ): Promise<{ lease: LeaseInfo | undefined; revision: number } & LeaseLocks>;
  revokeLease(
    tenant: Tenant,
    id: number,
  ): Promise<{ found: boolean; revision: number } & LeaseLocks>;
  getLease(
    tenant: Tenant,
    id: number,
    withAttached: boolean,
  ): Promise<{ lease: LeaseInfo | undefined; revision: number }>;
  listLeases(tenant: Tenant): Promise<{ leases: LeaseInfo[]; revision: number }>;
}

/** A grant to record: the node counter seen by the granting quorum mints the token. */
export interface LockGrant {
  readonly name: string;
  readonly owner: string;
  readonly nonce: string;
  /** Highest fencing counter reported by the granting quorum of lock nodes. */
  readonly nodeCounter: number;
  readonly acquireAt: number;
  /** Ignored for lease-held locks: they expire with their lease. */
  readonly expireAt: number;
  readonly leaseId: number;
}

/**
 * Lock records in the state store: the tenant's newest fencing token per
 * lock name (which fenced KV writes are checked against), and a record of
 * each held lock for Describe, List and the LOCK_* events. Mutual exclusion
 * itself is the lock nodes' job (LockNodes).
 */
export interface LockRecords {
  /**
   * Mints token = max(nodeCounter, newest token of the name) + 1 and stores it
   * as the newest token, records the lock and emits LOCK_ACQUIRED, atomically.
   * A lease-held grant whose lease is gone changes nothing.
   */
  grantLock(
    tenant: Tenant,
    grant: LockGrant,
  ): Promise<
    | { kind: "granted"; lock: LockRecord; revision: number }
    | { kind: "lease_not_found"; revision: number }
  >;
  /** The unexpired record of a lock, if any. */
  getLock(
    tenant: Tenant,
    name: string,
  ): Promise<{ lock: LockRecord | undefined; revision: number }>;
  /** Unexpired records whose names start with `prefix`, in name order. */
  listLocks(tenant: Tenant, prefix: string): Promise<{ locks: LockRecord[]; revision: number }>;
  /** Removes the record if `token` holds it, with LOCK_RELEASED. */
  releaseLock(
    tenant: Tenant,
    name: string,
    token: number,
  ): Promise<{ status: "released" | "not_found" | "not_owner"; revision: number }>;
  /** Moves the expiry of the record `token` holds. */
  extendLock(
    tenant: Tenant,
    name: string,
    token: number,
    expireAt: number,
  ): Promise<{
    status: "extended" | "not_found" | "not_owner";
    lock: LockRecord | undefined;
    revision: number;
  }>;
}

/** The outcome of trying to take a lock on the lock nodes. */
export type NodeAcquire =
  | {
      readonly kind: "granted";
      readonly nonce: string;
      /** Highest fencing counter on the granting quorum. */
      readonly counter: number;
      /** When the attempt started (ms epoch, this process's clock). */
      readonly startedAt: number;
      /** ttl - elapsed - drift: how long the grant is certainly valid. */
      readonly validityMs: number;
    }
  /** Another owner holds it on enough nodes; it ends in at most `remainingMs`. */
  | { readonly kind: "held"; readonly remainingMs: number }
  /** Nobody reached a quorum (a split vote); partial grants were undone. */
  | { readonly kind: "split" };

/**
 * Mutual exclusion over the lock nodes (Redlock over N Redis servers, or in
 * memory). Each method throws UNAVAILABLE NO_QUORUM when fewer than a quorum
 * of voting nodes answer, and never grants without a quorum.
 */
export interface LockNodes extends Lifecycle {
  /** Tries to take `name` for `owner` (re-taking one's own hold renews it). */
  acquire(tenant: Tenant, name: string, owner: string, ttlMs: number): Promise<NodeAcquire>;
  /** Writes the minted token to the granting nodes (their counter and the hold); false without a quorum. */
  confirm(tenant: Tenant, name: string, nonce: string, token: number): Promise<boolean>;
  /** Extends the hold of `nonce` to `ttlMs` from now on a quorum. */
  extend(
    tenant: Tenant,
    name: string,
    nonce: string,
    ttlMs: number,
  ): Promise<{ extended: boolean; validityMs: number; startedAt: number }>;
  /**
   * Releases one grant's hold on every node it can reach (best effort). The
   * grant is named by its nonce or, once confirmed, its fencing token as a
   * decimal string (nonces are never all digits).
   */
  release(tenant: Tenant, name: string, grant: string): Promise<void>;
}

// ---- execution state (SnapshotService) ----

/** How a snapshot's state is stored: as sent, or brotli-compressed (core/snapshots.ts decides). */
export type StateEncoding = "identity" | "br";

/** State bytes as stored, with the size the client sees. */
export interface EncodedState {
  readonly encoding: StateEncoding;
  readonly bytes: Uint8Array;
  /** Uncompressed size in bytes. */
  readonly size: number;
}

/** A snapshot as stored: its metadata, its encoded state and the input of the last Resume. */
export interface StoredSnapshot {
  readonly meta: SnapshotMeta;
  readonly state: EncodedState;
  readonly input: Uint8Array;
}

/** A checkpoint: a named copy of a snapshot. */
export interface CheckpointInfo {
  readonly name: string;
  /** The sequence of the snapshot that was copied. */
  readonly sequence: number;
  readonly createAt: number;
  readonly status: ExecutionStatus;
  readonly eventSeq: number;
  readonly stateSize: number;
}

/** One entry of an execution's event log. */
export interface ExecutionEvent {
  /** 1, 2, 3, ... per execution. */
  readonly seq: number;
  readonly type: string;
  readonly data: Uint8Array;
  /** When it was appended (ms epoch, the store's clock). */
  readonly time: number;
}

/** A Save, validated and with its state encoded. */
export interface SnapshotWrite {
  readonly executionId: string;
  readonly sequence: number;
  readonly state: EncodedState;
  readonly contentType: string;
  /** undefined keeps the stored status (RUNNING for a new snapshot). */
  readonly status: ExecutionStatus | undefined;
  readonly metadata: Readonly<Record<string, string>>;
  /** Relative TTL; undefined = never expires. */
  readonly ttlMs: number | undefined;
  readonly eventSeq: number;
}

/** A page of List: snapshots updated in [from, before), newest update first, after a cursor. */
export interface SnapshotQuery {
  /** Only these statuses; empty = all. */
  readonly statuses: readonly ExecutionStatus[];
  /** Inclusive lower bound of update time (ms epoch). */
  readonly updatedFrom: number | undefined;
  /** Exclusive upper bound of update time (ms epoch). */
  readonly updatedBefore: number | undefined;
  /** Only snapshots strictly after this position in (update time desc, id asc) order. */
  readonly after: { readonly updateAt: number; readonly executionId: string } | undefined;
  /** Page size, >= 1. */
  readonly limit: number;
}

/** What AppendEvents asks the store to do. */
export interface EventAppend {
  readonly events: readonly { readonly type: string; readonly data: Uint8Array }[];
  /** The log's last sequence must equal it; undefined = no check. */
  readonly expectedLastSeq: number | undefined;
  /** Remember the answer under `key` for `ttlMs`; `digest` identifies the request. */
  readonly idempotency:
    | { readonly key: string; readonly digest: string; readonly ttlMs: number }
    | undefined;
}

/**
 * Execution state in the state store: snapshots, checkpoints, resume tokens
 * and event logs. Every method is atomic on its own. Every mutation advances
 * the tenant revision by one with exactly one changefeed entry: SNAPSHOT_SAVED,
 * SNAPSHOT_DELETED, EXECUTION_SUSPENDED or EXECUTION_RESUMED under
 * `/snapshots/<id>` (carrying the snapshot metadata), DELETE events of a
 * purge's KV keys, or no events at all (Checkpoint, AppendEvents, a purge
 * that found no snapshot). A snapshot whose TTL passed counts as absent; a
 * mutation that finds one expires it first, at its own revision (as KV does).
 * Times (update, create, suspend, event time) come from the store's clock;
 * update times never go backwards within a tenant.
 */
export interface SnapshotStore {
  /** The live snapshot, with its state and input when `withState`. */
  getSnapshot(
    tenant: Tenant,
    executionId: string,
    withState: boolean,
  ): Promise<{ snapshot: StoredSnapshot | undefined; revision: number }>;

  /** Stores `write` if its sequence is greater than the stored one (any sequence for a new snapshot). */
  saveSnapshot(
    tenant: Tenant,
    write: SnapshotWrite,
  ): Promise<
    | { kind: "saved"; meta: SnapshotMeta; revision: number }
    | { kind: "stale"; currentSequence: number; revision: number }
  >;

  /**
   * Replaces the state (and nothing else but the sequence, which becomes
   * `expectedSequence + 1`, and the update time) if the stored sequence is
   * `expectedSequence`: the commit step of a Patch.
   */
  replaceState(
    tenant: Tenant,
    executionId: string,
    expectedSequence: number,
    state: EncodedState,
  ): Promise<
    | { kind: "saved"; meta: SnapshotMeta; revision: number }
    | { kind: "stale"; currentSequence: number; revision: number }
    | { kind: "not_found"; revision: number }
  >;

  /**
   * Deletes the snapshot and its pending resume token. With `purge` also its
   * checkpoints, event log and idempotency records, and every KV key starting
   * with `kvPrefix` (DELETE events; keys whose TTL passed expire first, at
   * their own revision). `deleted` says whether a live snapshot existed.
   */
  deleteSnapshot(
    tenant: Tenant,
    executionId: string,
    purge: { readonly kvPrefix: string } | undefined,
  ): Promise<{ deleted: boolean; revision: number }>;

  listSnapshots(
    tenant: Tenant,
    query: SnapshotQuery,
  ): Promise<{ snapshots: SnapshotMeta[]; more: boolean; revision: number }>;

  /** Copies the live snapshot under `name`; a new name beyond `maxCheckpoints` is refused. */
  checkpoint(
    tenant: Tenant,
    executionId: string,
    name: string,
    maxCheckpoints: number,
  ): Promise<
    | { kind: "created"; checkpoint: CheckpointInfo; revision: number }
    | { kind: "not_found"; revision: number }
    | { kind: "quota"; count: number; revision: number }
  >;

  /**
   * Makes checkpoint `name` the snapshot, with sequence max(stored, copied) + 1,
   * keeping the current snapshot's create and expire times; a pending resume
   * token is invalidated.
   */
  restore(
    tenant: Tenant,
    executionId: string,
    name: string,
  ): Promise<
    | { kind: "restored"; snapshot: StoredSnapshot; revision: number }
    | { kind: "checkpoint_not_found"; revision: number }
  >;

  /** The execution's checkpoints in name order (bytewise UTF-8). */
  listCheckpoints(
    tenant: Tenant,
    executionId: string,
  ): Promise<{ checkpoints: CheckpointInfo[]; revision: number }>;

  /**
   * Sets status SUSPENDED with `suspension` (its suspendAt is replaced by the
   * store's clock) and makes `tokenHash` the one valid resume token, replacing
   * any earlier one.
   */
  suspend(
    tenant: Tenant,
    executionId: string,
    suspension: Suspension,
    tokenHash: string,
  ): Promise<
    | { kind: "suspended"; meta: SnapshotMeta; revision: number }
    | { kind: "not_found"; revision: number }
  >;

  /**
   * Redeems a token: if `tokenHash` is the pending token of a live SUSPENDED
   * snapshot and has not expired, sets RUNNING, stores `input`, clears the
   * suspension and forgets the token. Exactly one of concurrent calls wins.
   */
  resume(
    tenant: Tenant,
    tokenHash: string,
    input: Uint8Array,
  ): Promise<
    | { kind: "resumed"; snapshot: StoredSnapshot; revision: number }
    | { kind: "invalid_token"; revision: number }
  >;

  /**
   * Appends to the execution's log (which needs no snapshot). A key seen
   * within its TTL answers as the first time and appends nothing
   * (`replayed`), or `idempotency_mismatch` when its digest differs.
   */
  appendEvents(
    tenant: Tenant,
    executionId: string,
    append: EventAppend,
  ): Promise<
    | { kind: "appended"; firstSeq: number; lastSeq: number; replayed: boolean; revision: number }
    | { kind: "stale"; lastSeq: number; revision: number }
    | { kind: "idempotency_mismatch"; revision: number }
  >;

  /** Events with seq > `afterSeq`, at most `limit` and (after the first) `maxBytes` of data. */
  readEvents(
    tenant: Tenant,
    executionId: string,
    afterSeq: number,
    limit: number,
    maxBytes: number,
  ): Promise<{ events: ExecutionEvent[]; lastSeq: number; revision: number }>;

  /** Deletes up to `limit` snapshots whose TTL passed (SNAPSHOT_DELETED), as Delete without purge. */
  sweepExpired(tenant: Tenant, limit: number): Promise<SweepResult>;

  /** Tenants that hold or held data, for background sweeps. */
  tenants(): Promise<Tenant[]>;

  /** Registers a callback told when a write on this replica sets a snapshot expiry. */
  onExpiryScheduled(listener: (tenant: Tenant, expireAt: number) => void): void;
}
