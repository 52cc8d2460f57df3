/**
 * Execution state of the embedded backend, with the same semantics as the
 * Redis scripts (scripts/snapshot-*.lua). Each tenant's snapshot state hangs
 * off its shared MemoryTenant (a WeakMap keyed by the tenant), so snapshot
 * writes advance the same revision and feed as keys, leases and locks, and a
 * purge removes KV keys through the tenant's own key functions (indexes and
 * lease sets stay right). Every method runs without an await between its
 * checks and its changes: each is atomic.
 */
import { compareKeys, prefixEnd } from "../../core/keys.js";
import {
  type ChangeEvent,
  type EventKind,
  type ExecutionStatus,
  SNAPSHOT_EVENT_PREFIX,
  type SnapshotMeta,
  type Suspension,
  type Tenant,
} from "../../core/model.js";
import type {
  CheckpointInfo,
  EncodedState,
  EventAppend,
  ExecutionEvent,
  SnapshotQuery,
  SnapshotStore,
  SnapshotWrite,
  StoredSnapshot,
} from "../../core/ports.js";
import { listOrderBound, listOrderKey } from "../../core/snapshots.js";
import { BTree } from "./btree.js";
import { type MemoryTenant, type MemoryTenants, tombstone } from "./memory-tenant.js";

const STATUSES: readonly ExecutionStatus[] = [
  "pending",
  "running",
  "suspended",
  "completed",
  "failed",
  "cancelled",
];

interface SnapshotRecord {
  readonly meta: SnapshotMeta;
  readonly state: EncodedState;
  readonly input: Uint8Array;
  /** Hash of the one valid resume token, while SUSPENDED. */
  readonly tokenHash: string | undefined;
}

interface CheckpointRecord {
  readonly info: CheckpointInfo;
  readonly snapshot: StoredSnapshot;
}

interface IdempotencyRecord {
  readonly firstSeq: number;
  readonly lastSeq: number;
  readonly digest: string;
  readonly expireAt: number;
}

type ExpiryKey = readonly [number, string];
const newOrderIndex = () => new BTree<string, undefined>(undefined, compareKeys);

/** One tenant's execution state. */
class TenantSnapshots {
  readonly records = new Map<string, SnapshotRecord>();
  /** Per status: List order keys (listOrderKey) of its snapshots. */
  readonly order = new Map<ExecutionStatus, ReturnType<typeof newOrderIndex>>(
    STATUSES.map((s) => [s, newOrderIndex()]),
  );
  readonly expiries = new BTree<ExpiryKey, undefined>(
    undefined,
    (a, b) => a[0] - b[0] || compareKeys(a[1], b[1]),
  );
  /** Resume token hash -> execution id. */
  readonly tokens = new Map<string, string>();
  readonly checkpoints = new Map<string, Map<string, CheckpointRecord>>();
  readonly logs = new Map<string, ExecutionEvent[]>();
  /** Per execution, in insertion (= expiry) order. */
  readonly idempotency = new Map<string, Map<string, IdempotencyRecord>>();
  /** The newest update time handed out: update times never go backwards. */
  clock = 0;

  stamp(now: number): number {
    this.clock = Math.max(this.clock, now);
    return this.clock;
  }

  put(record: SnapshotRecord): void {
    this.remove(record.meta.executionId);
    const { meta } = record;
    this.records.set(meta.executionId, record);
    this.order.get(meta.status)!.set(listOrderKey(meta.updateAt, meta.executionId), undefined);
    if (meta.expireAt !== undefined)
      this.expiries.set([meta.expireAt, meta.executionId], undefined);
    if (record.tokenHash !== undefined) this.tokens.set(record.tokenHash, meta.executionId);
  }

  /** Removes a snapshot (live or expired) from every index, its token included. */
  remove(id: string): SnapshotRecord | undefined {
    const record = this.records.get(id);
    if (!record) return undefined;
    const { meta } = record;
    this.records.delete(id);
    this.order.get(meta.status)!.delete(listOrderKey(meta.updateAt, id));
    if (meta.expireAt !== undefined) this.expiries.delete([meta.expireAt, id]);
    if (record.tokenHash !== undefined) this.tokens.delete(record.tokenHash);
    return record;
  }

  live(id: string, now: number): SnapshotRecord | undefined {
    const record = this.records.get(id);
    return record && isLive(record.meta, now) ? record : undefined;
  }
}

function isLive(meta: SnapshotMeta, now: number): boolean {
  return meta.expireAt === undefined || meta.expireAt > now;
}

/** A snapshot event: `/snapshots/<id>` at the event revision, with the metadata. */
function snapshotEvent(kind: EventKind, meta: SnapshotMeta, revision: number): ChangeEvent {
  return {
    kind,
    kv: tombstone(`${SNAPSHOT_EVENT_PREFIX}${meta.executionId}`, revision),
    prevKv: undefined,
    snapshot: meta,
  };
}

function stored(record: SnapshotRecord, withState: boolean): StoredSnapshot {
  return withState
    ? { meta: record.meta, state: record.state, input: record.input }
    : {
        meta: record.meta,
        state: { encoding: "identity", bytes: new Uint8Array(0), size: record.state.size },
        input: new Uint8Array(0),
      };
}

/** A private copy: request buffers belong to the transport. */
function own(state: EncodedState): EncodedState {
  return { ...state, bytes: state.bytes.slice() };
}

export class MemorySnapshotStore implements SnapshotStore {
  private readonly state = new WeakMap<MemoryTenant, TenantSnapshots>();
  private readonly expiryListeners: ((tenant: Tenant, expireAt: number) => void)[] = [];

  constructor(private readonly tenants_: MemoryTenants) {}

  onExpiryScheduled(listener: (tenant: Tenant, expireAt: number) => void): void {
    this.expiryListeners.push(listener);
  }

  async tenants(): Promise<Tenant[]> {
    return this.tenants_.names();
  }

  async getSnapshot(tenant: Tenant, executionId: string, withState: boolean) {
    const { t, s } = this.open(tenant);
    const record = s.live(executionId, Date.now());
    return { snapshot: record && stored(record, withState), revision: t.revision };
  }

  async saveSnapshot(tenant: Tenant, write: SnapshotWrite) {
    const { t, s } = this.open(tenant);
    const now = Date.now();
    this.expireIfDue(t, s, write.executionId, now);
    const prev = s.records.get(write.executionId);
    if (prev && write.sequence <= prev.meta.sequence) {
      return { kind: "stale" as const, currentSequence: prev.meta.sequence, revision: t.revision };
    }
    const updateAt = s.stamp(now);
    const status = write.status ?? prev?.meta.status ?? "running";
    // The suspension and its token survive only while the status stays SUSPENDED.
    const suspended = status === "suspended";
    const meta: SnapshotMeta = {
      executionId: write.executionId,
      sequence: write.sequence,
      contentType: write.contentType,
      status,
      metadata: { ...write.metadata },
      createAt: prev?.meta.createAt ?? updateAt,
      updateAt,
      expireAt: write.ttlMs === undefined ? undefined : now + write.ttlMs,
      eventSeq: write.eventSeq,
      stateSize: write.state.size,
      suspension: suspended ? prev?.meta.suspension : undefined,
    };
    s.put({
      meta,
      state: own(write.state),
      input: prev?.input ?? new Uint8Array(0),
      tokenHash: suspended ? prev?.tokenHash : undefined,
    });
    return {
      kind: "saved" as const,
      meta,
      revision: this.commit(tenant, t, "snapshot_saved", meta),
    };
  }

  async replaceState(
    tenant: Tenant,
    executionId: string,
    expectedSequence: number,
    state: EncodedState,
  ) {
    const { t, s } = this.open(tenant);
    const now = Date.now();
    this.expireIfDue(t, s, executionId, now);
    const prev = s.records.get(executionId);
    if (!prev) return { kind: "not_found" as const, revision: t.revision };
    if (prev.meta.sequence !== expectedSequence) {
      return { kind: "stale" as const, currentSequence: prev.meta.sequence, revision: t.revision };
    }
    const meta: SnapshotMeta = {
      ...prev.meta,
      sequence: expectedSequence + 1,
      updateAt: s.stamp(now),
      stateSize: state.size,
    };
    s.put({ ...prev, meta, state: own(state) });
    return {
      kind: "saved" as const,
      meta,
      revision: this.commit(tenant, t, "snapshot_saved", meta),
    };
  }

  async deleteSnapshot(
    tenant: Tenant,
    executionId: string,
    purge: { readonly kvPrefix: string } | undefined,
  ) {
    const { t, s } = this.open(tenant);
    const now = Date.now();
    this.expireIfDue(t, s, executionId, now);
    const range = purge && { start: purge.kvPrefix, end: prefixEnd(purge.kvPrefix) };
    if (range) {
      // KV keys whose TTL passed expire first, at their own revision (as a KV delete does).
      const due = t.expiredIn(range, now);
      if (due.length > 0) {
        const revision = t.revision + 1;
        t.commit({
          revision,
          events: due.map((key) => ({
            kind: "expire",
            kv: tombstone(key, revision),
            prevKv: t.remove(key),
          })),
        });
      }
    }
    const revision = t.revision + 1;
    const events: ChangeEvent[] = [];
    const removed = s.remove(executionId);
    if (removed) events.push(snapshotEvent("snapshot_deleted", removed.meta, revision));
    let changed = removed !== undefined;
    if (range) {
      changed = s.checkpoints.delete(executionId) || changed;
      changed = s.logs.delete(executionId) || changed;
      changed = s.idempotency.delete(executionId) || changed;
      for (const key of t.liveKeysIn(range, undefined, now)) {
        const prev = t.remove(key);
        events.push({ kind: "delete", kv: tombstone(key, revision), prevKv: prev });
      }
    }
    if (changed || events.length > 0) t.commit({ revision, events });
    return { deleted: removed !== undefined, revision: t.revision };
  }

  async listSnapshots(tenant: Tenant, query: SnapshotQuery) {
    const { t, s } = this.open(tenant);
    const now = Date.now();
    const cursor = query.after && listOrderKey(query.after.updateAt, query.after.executionId);
    const floor = query.updatedBefore === undefined ? "" : listOrderBound(query.updatedBefore);
    const ceiling = query.updatedFrom === undefined ? undefined : listOrderBound(query.updatedFrom);
    const start = cursor !== undefined && compareKeys(cursor, floor) > 0 ? cursor : floor;
    const found: [string, SnapshotMeta][] = [];
    for (const status of query.statuses.length > 0 ? query.statuses : STATUSES) {
      let taken = 0;
      for (const key of s.order.get(status)!.keys(start)) {
        if (ceiling !== undefined && compareKeys(key, ceiling) >= 0) break;
        if (key === cursor) continue;
        const record = s.records.get(key.slice(key.indexOf(":") + 1));
        if (!record || !isLive(record.meta, now)) continue;
        found.push([key, record.meta]);
        if (++taken > query.limit) break;
      }
    }
    found.sort((a, b) => compareKeys(a[0], b[0]));
    return {
      snapshots: found.slice(0, query.limit).map(([, meta]) => meta),
      more: found.length > query.limit,
      revision: t.revision,
    };
  }

  async checkpoint(tenant: Tenant, executionId: string, name: string, maxCheckpoints: number) {
    const { t, s } = this.open(tenant);
    const now = Date.now();
    this.expireIfDue(t, s, executionId, now);
    const record = s.records.get(executionId);
    if (!record) return { kind: "not_found" as const, revision: t.revision };
    let checkpoints = s.checkpoints.get(executionId);
    if (!checkpoints?.has(name) && (checkpoints?.size ?? 0) >= maxCheckpoints) {
      return { kind: "quota" as const, count: checkpoints?.size ?? 0, revision: t.revision };
    }
    if (!checkpoints) {
      checkpoints = new Map();
      s.checkpoints.set(executionId, checkpoints);
    }
    const { meta } = record;
    const checkpoint: CheckpointInfo = {
      name,
      sequence: meta.sequence,
      createAt: now,
      status: meta.status,
      eventSeq: meta.eventSeq,
      stateSize: meta.stateSize,
    };
    // Records are never changed in place, so the copy can share them.
    checkpoints.set(name, {
      info: checkpoint,
      snapshot: { meta, state: record.state, input: record.input },
    });
    return { kind: "created" as const, checkpoint, revision: this.commitQuiet(t) };
  }

  async restore(tenant: Tenant, executionId: string, name: string) {
    const { t, s } = this.open(tenant);
    const now = Date.now();
    this.expireIfDue(t, s, executionId, now);
    const checkpoint = s.checkpoints.get(executionId)?.get(name);
    if (!checkpoint) return { kind: "checkpoint_not_found" as const, revision: t.revision };
    const current = s.records.get(executionId);
    const updateAt = s.stamp(now);
    const copied = checkpoint.snapshot;
    const meta: SnapshotMeta = {
      ...copied.meta,
      sequence: Math.max(current?.meta.sequence ?? 0, copied.meta.sequence) + 1,
      createAt: current?.meta.createAt ?? updateAt,
      updateAt,
      expireAt: current?.meta.expireAt,
    };
    s.put({ meta, state: copied.state, input: copied.input, tokenHash: undefined });
    return {
      kind: "restored" as const,
      snapshot: { meta, state: copied.state, input: copied.input },
      revision: this.commit(tenant, t, "snapshot_saved", meta),
    };
  }

  async listCheckpoints(tenant: Tenant, executionId: string) {
    const { t, s } = this.open(tenant);
    const checkpoints = [...(s.checkpoints.get(executionId)?.values() ?? [])]
      .map((c) => c.info)
      .sort((a, b) => compareKeys(a.name, b.name));
    return { checkpoints, revision: t.revision };
  }

  async suspend(tenant: Tenant, executionId: string, suspension: Suspension, tokenHash: string) {
    const { t, s } = this.open(tenant);
    const now = Date.now();
    this.expireIfDue(t, s, executionId, now);
    const record = s.records.get(executionId);
    if (!record) return { kind: "not_found" as const, revision: t.revision };
    const meta: SnapshotMeta = {
      ...record.meta,
      status: "suspended",
      updateAt: s.stamp(now),
      suspension: { ...suspension, data: suspension.data.slice(), suspendAt: now },
    };
    s.put({ ...record, meta, tokenHash });
    return {
      kind: "suspended" as const,
      meta,
      revision: this.commit(tenant, t, "execution_suspended", meta),
    };
  }

  async resume(tenant: Tenant, tokenHash: string, input: Uint8Array) {
    const { t, s } = this.open(tenant);
    const now = Date.now();
    const executionId = s.tokens.get(tokenHash);
    if (executionId === undefined) return { kind: "invalid_token" as const, revision: t.revision };
    this.expireIfDue(t, s, executionId, now);
    const record = s.records.get(executionId);
    const expireAt = record?.meta.suspension?.expireAt;
    if (
      !record ||
      record.tokenHash !== tokenHash ||
      record.meta.status !== "suspended" ||
      (expireAt !== undefined && expireAt <= now)
    ) {
      return { kind: "invalid_token" as const, revision: t.revision };
    }
    const meta: SnapshotMeta = {
      ...record.meta,
      status: "running",
      updateAt: s.stamp(now),
      suspension: undefined,
    };
    const owned = input.slice();
    s.put({ meta, state: record.state, input: owned, tokenHash: undefined });
    return {
      kind: "resumed" as const,
      snapshot: { meta, state: record.state, input: owned },
      revision: this.commit(tenant, t, "execution_resumed", meta),
    };
  }

  async appendEvents(tenant: Tenant, executionId: string, append: EventAppend) {
    const { t, s } = this.open(tenant);
    const now = Date.now();
    const log = s.logs.get(executionId) ?? [];
    const lastSeq = log.length;
    const { idempotency } = append;
    let remembered: Map<string, IdempotencyRecord> | undefined;
    if (idempotency) {
      remembered = s.idempotency.get(executionId);
      if (remembered) {
        // Insertion order is expiry order: drop the expired head.
        for (const [key, record] of remembered) {
          if (record.expireAt > now) break;
          remembered.delete(key);
        }
        const seen = remembered.get(idempotency.key);
        if (seen) {
          if (seen.digest !== idempotency.digest) {
            return { kind: "idempotency_mismatch" as const, revision: t.revision };
          }
          return {
            kind: "appended" as const,
            firstSeq: seen.firstSeq,
            lastSeq: seen.lastSeq,
            replayed: true,
            revision: t.revision,
          };
        }
      }
    }
    if (append.expectedLastSeq !== undefined && append.expectedLastSeq !== lastSeq) {
      return { kind: "stale" as const, lastSeq, revision: t.revision };
    }
    for (const event of append.events) {
      log.push({ seq: log.length + 1, type: event.type, data: event.data.slice(), time: now });
    }
    s.logs.set(executionId, log);
    const firstSeq = lastSeq + 1;
    if (idempotency) {
      if (!remembered) {
        remembered = new Map();
        s.idempotency.set(executionId, remembered);
      }
      remembered.set(idempotency.key, {
        firstSeq,
        lastSeq: log.length,
        digest: idempotency.digest,
        expireAt: now + idempotency.ttlMs,
      });
    }
    return {
      kind: "appended" as const,
      firstSeq,
      lastSeq: log.length,
      replayed: false,
      revision: this.commitQuiet(t),
    };
  }

  async readEvents(
    tenant: Tenant,
    executionId: string,
    afterSeq: number,
    limit: number,
    maxBytes: number,
  ) {
    const { t, s } = this.open(tenant);
    const log = s.logs.get(executionId) ?? [];
    const events: ExecutionEvent[] = [];
    let bytes = 0;
    // Sequences are 1..n, so event `seq` sits at index seq - 1.
    for (let i = afterSeq; i < log.length && events.length < limit; i++) {
      const event = log[i]!;
      if (events.length > 0 && bytes + event.data.length > maxBytes) break;
      bytes += event.data.length;
      events.push(event);
    }
    return { events, lastSeq: log.length, revision: t.revision };
  }

  async sweepExpired(tenant: Tenant, limit: number) {
    const { t, s } = this.open(tenant);
    const now = Date.now();
    const revision = t.revision + 1;
    const events: ChangeEvent[] = [];
    for (const [[at, id]] of [...s.expiries.entries()]) {
      if (at > now || events.length >= limit) break;
      const removed = s.remove(id);
      if (removed) events.push(snapshotEvent("snapshot_deleted", removed.meta, revision));
    }
    t.commitIfAny(events);
    return { expired: events.length, nextExpireAt: s.expiries.minKey()?.[0] };
  }

  private open(tenant: Tenant): { t: MemoryTenant; s: TenantSnapshots } {
    const t = this.tenants_.get(tenant);
    let s = this.state.get(t);
    if (!s) {
      s = new TenantSnapshots();
      this.state.set(t, s);
    }
    return { t, s };
  }

  /** A snapshot whose TTL passed is deleted first, at its own revision. */
  private expireIfDue(t: MemoryTenant, s: TenantSnapshots, id: string, now: number): void {
    const record = s.records.get(id);
    if (!record || isLive(record.meta, now)) return;
    s.remove(id);
    const revision = t.revision + 1;
    t.commit({ revision, events: [snapshotEvent("snapshot_deleted", record.meta, revision)] });
  }

  /** Commits one snapshot event at the next revision; returns it. */
  private commit(tenant: Tenant, t: MemoryTenant, kind: EventKind, meta: SnapshotMeta): number {
    const revision = t.revision + 1;
    t.commit({ revision, events: [snapshotEvent(kind, meta, revision)] });
    if (meta.expireAt !== undefined) {
      for (const listener of this.expiryListeners) listener(tenant, meta.expireAt);
    }
    return revision;
  }

  /** A mutation with no public event: the revision still advances, with an empty feed entry. */
  private commitQuiet(t: MemoryTenant): number {
    const revision = t.revision + 1;
    t.commit({ revision, events: [] });
    return revision;
  }
}
