/**
 * The embedded backend's key-value store and changefeed: the same semantics
 * as the Redis backend (revisions, lazy and swept expiry, atomic plans), in
 * process memory. Nothing survives a restart.
 */
import type {
  ChangeEvent,
  Compare,
  FeedEntry,
  KeyValue,
  RangeQuery,
  RangeResult,
  Tenant,
  TxnOp,
  TxnOpResult,
  TxnOutcome,
  TxnPlan,
} from "../../core/model.js";
import type { ChangeFeed, KvStore, SweepResult } from "../../core/ports.js";
import { type MemoryTenant, type MemoryTenants, tombstone } from "./memory-tenant.js";

const EMPTY = new Uint8Array(0);

function withoutValue(kv: KeyValue): KeyValue {
  return { ...kv, value: EMPTY };
}

export class MemoryKvStore implements KvStore, ChangeFeed {
  private readonly expiryListeners: ((tenant: Tenant, expireAt: number) => void)[] = [];

  constructor(private readonly tenants_: MemoryTenants) {}

  async start(): Promise<void> {}
  async close(): Promise<void> {}
  async ready(): Promise<boolean> {
    return true;
  }

  onExpiryScheduled(listener: (tenant: Tenant, expireAt: number) => void): void {
    this.expiryListeners.push(listener);
  }

  /** Tells the sweeper that something of `tenant` now expires at `expireAt`. */
  scheduled(tenant: Tenant, expireAt: number): void {
    for (const listener of this.expiryListeners) listener(tenant, expireAt);
  }

  async tenants(): Promise<Tenant[]> {
    return this.tenants_.names();
  }

  async get(
    tenant: Tenant,
    keys: readonly string[],
  ): Promise<{ kvs: (KeyValue | undefined)[]; revision: number }> {
    const t = this.tenants_.get(tenant);
    const now = Date.now();
    return { kvs: keys.map((key) => t.live(key, now)), revision: t.revision };
  }

  async range(tenant: Tenant, query: RangeQuery): Promise<RangeResult & { revision: number }> {
    const t = this.tenants_.get(tenant);
    return { ...rangeOf(t, query, Date.now()), revision: t.revision };
  }

  async read(tenant: Tenant, fromRevision: number, limit: number) {
    const t = this.tenants_.get(tenant);
    return {
      entries: t.feed.from(fromRevision, limit),
      oldestRevision: t.feed.oldestRevision(),
      revision: t.revision,
    };
  }

  async tail(
    tenant: Tenant,
    afterRevision: number,
    limit: number,
    blockMs: number,
    signal: AbortSignal,
  ) {
    const t = this.tenants_.get(tenant);
    if (t.revision <= afterRevision && !signal.aborted) await t.nextCommit(blockMs, signal);
    return t.feed.from(afterRevision + 1, limit);
  }

  async txn(tenant: Tenant, plan: TxnPlan): Promise<TxnOutcome> {
    const t = this.tenants_.get(tenant);
    const now = Date.now();

    for (const fence of plan.fences) {
      const current = t.fences.get(fence.lockName) ?? 0;
      if (fence.token < current) {
        return {
          kind: "fence_stale",
          lockName: fence.lockName,
          currentToken: current,
          revision: t.revision,
        };
      }
    }

    const succeeded = plan.compares.every((c) => holds(c, t.live(c.key, now)));
    const ops = succeeded ? plan.success : plan.failure;

    for (const op of ops) {
      if (op.kind === "put" && op.leaseId !== 0 && !t.liveLease(op.leaseId, now)) {
        return { kind: "lease_not_found", leaseId: op.leaseId, revision: t.revision };
      }
    }

    // Keys this plan will write whose TTL (or lease) already ran out expire
    // first, at their own revision, so watchers see EXPIRE before the change.
    const due = new Set<string>();
    for (const op of ops) {
      if (op.kind === "put" || op.kind === "delete") {
        if (t.isExpired(op.key, now)) due.add(op.key);
      } else if (op.kind === "delete_range") {
        for (const key of t.expiredIn(op.range, now)) due.add(key);
      }
    }
    if (due.size > 0) {
      const revision = t.revision + 1;
      const events: ChangeEvent[] = [...due].map((key) => ({
        kind: "expire",
        kv: tombstone(key, revision),
        prevKv: t.remove(key),
      }));
      t.commit({ revision, events });
    }

    const revision = t.revision + 1;
    const events: ChangeEvent[] = [];
    const results: TxnOpResult[] = ops.map((op) =>
      this.apply(tenant, t, op, revision, now, events),
    );
    return { kind: "done", succeeded, results, revision: t.commitIfAny(events) };
  }

  async sweepExpired(tenant: Tenant, limit: number): Promise<SweepResult> {
    const t = this.tenants_.get(tenant);
    const events: ChangeEvent[] = [];
    const now = Date.now();
    const endedLocks = t.expireDue(now, limit, t.revision + 1, events);
    t.commitIfAny(events);
    // Age-trim the feed here too, so an idle tenant's history ages like Redis's.
    t.feed.trim(now);
    return { expired: events.length, nextExpireAt: t.nextExpireAt(), endedLocks };
  }

  private apply(
    tenant: Tenant,
    t: MemoryTenant,
    op: TxnOp,
    revision: number,
    now: number,
    events: FeedEntry["events"][number][],
  ): TxnOpResult {
    switch (op.kind) {
      case "get":
        return { kind: "get", kv: t.live(op.key, now) };
      case "range":
        return { kind: "range", result: rangeOf(t, op.query, now) };
      case "put": {
        const prev = t.live(op.key, now);
        const expireAt = op.ttlMs !== undefined ? now + op.ttlMs : undefined;
        t.store({
          key: op.key,
          value: op.value.slice(),
          createRevision: prev ? prev.createRevision : revision,
          modRevision: revision,
          version: prev ? prev.version + 1 : 1,
          leaseId: op.leaseId,
          expireAt,
        });
        const kv = t.live(op.key, now)!;
        if (expireAt !== undefined) this.scheduled(tenant, expireAt);
        events.push({ kind: "put", kv, prevKv: prev });
        return { kind: "put", kv: withoutValue(kv), prevKv: op.prevKv ? prev : undefined };
      }
      case "delete": {
        const prev = t.live(op.key, now) ? t.remove(op.key) : undefined;
        if (prev) events.push({ kind: "delete", kv: tombstone(op.key, revision), prevKv: prev });
        return { kind: "delete", deleted: prev ? 1 : 0, prevKvs: prev && op.prevKv ? [prev] : [] };
      }
      case "delete_range": {
        const keys = t.liveKeysIn(op.range, undefined, now);
        const prevKvs: KeyValue[] = [];
        for (const key of keys) {
          const prev = t.live(key, now)!;
          t.remove(key);
          events.push({ kind: "delete", kv: tombstone(key, revision), prevKv: prev });
          if (op.prevKv) prevKvs.push(prev);
        }
        return { kind: "delete", deleted: keys.length, prevKvs };
      }
    }
  }
}

/** Reads a page of a range: live keys strictly after the cursor, plus the count from it. */
function rangeOf(t: MemoryTenant, query: RangeQuery, now: number): RangeResult {
  const keys = t.liveKeysIn(query.range, query.after, now);
  const page = query.countOnly ? [] : keys.slice(0, query.limit);
  const kvs = page.map((key) => {
    const kv = t.live(key, now)!;
    return query.keysOnly ? withoutValue(kv) : kv;
  });
  return { kvs, count: keys.length, more: !query.countOnly && keys.length > query.limit };
}

/** Evaluates one compare against a live key (undefined = absent). */
export function holds(compare: Compare, kv: KeyValue | undefined): boolean {
  const { target, operator } = compare;
  let order: number;
  switch (target.kind) {
    case "exists":
      order = (kv !== undefined) === target.value ? 0 : 1;
      break;
    case "value":
      if (!kv) return false;
      order = Buffer.compare(kv.value, target.value);
      break;
    case "version":
      order = Math.sign((kv?.version ?? 0) - target.value);
      break;
    case "mod_revision":
      order = Math.sign((kv?.modRevision ?? 0) - target.value);
      break;
    case "create_revision":
      order = Math.sign((kv?.createRevision ?? 0) - target.value);
      break;
    case "lease_id":
      order = Math.sign((kv?.leaseId ?? 0) - target.value);
      break;
  }
  switch (operator) {
    case "equal":
      return order === 0;
    case "not_equal":
      return order !== 0;
    case "greater":
      return order > 0;
    case "less":
      return order < 0;
  }
}
