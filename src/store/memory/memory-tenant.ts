/**
 * One tenant's in-memory state: keys (records, a sorted key index, a TTL
 * index), leases, lock records, the newest fencing tokens and the
 * changefeed. The memory adapters of every port share it, so a lock grant,
 * a lease expiry and a key put advance one revision counter.
 */
import { compareKeys } from "../../core/keys.js";
import {
  type ChangeEvent,
  type FeedEntry,
  type KeyRange,
  type KeyValue,
  LOCK_EVENT_PREFIX,
  type LockRecord,
  type Tenant,
} from "../../core/model.js";
import { BTree } from "./btree.js";

type ExpiryKey = readonly [number, string];
const compareExpiry = (a: ExpiryKey, b: ExpiryKey): number =>
  a[0] - b[0] || compareKeys(a[1], b[1]);
const EMPTY = new Uint8Array(0);

export interface FeedRetention {
  /** Entries kept per tenant. */
  readonly maxEntries: number;
  /** Entries older than this are dropped (the newest is always kept). */
  readonly maxAgeMs: number;
}

/** A tenant's changefeed: one entry per revision, trimmed by count and age. */
export class MemoryFeed {
  private entries: { entry: FeedEntry; at: number }[] = [];
  private head = 0;

  constructor(private readonly retention: FeedRetention) {}

  append(entry: FeedEntry, now: number): void {
    this.entries.push({ entry, at: now });
    this.trim(now);
  }

  /** The oldest retained revision, 0 when empty. */
  oldestRevision(): number {
    return this.entries[this.head]?.entry.revision ?? 0;
  }

  from(fromRevision: number, limit: number): FeedEntry[] {
    const oldest = this.oldestRevision();
    if (oldest === 0) return [];
    const start = this.head + Math.max(0, fromRevision - oldest);
    return this.entries.slice(start, start + limit).map((e) => e.entry);
  }

  trim(now: number): void {
    const size = () => this.entries.length - this.head;
    while (size() > this.retention.maxEntries) this.head++;
    while (size() > 1 && now - this.entries[this.head]!.at > this.retention.maxAgeMs) this.head++;
    // Compact the array once the dropped prefix dominates it.
    if (this.head > 1024 && this.head * 2 > this.entries.length) {
      this.entries = this.entries.slice(this.head);
      this.head = 0;
    }
  }
}

export interface MemoryLease {
  readonly id: number;
  readonly grantedTtlMs: number;
  expireAt: number;
  readonly keys: Set<string>;
  readonly locks: Set<string>;
}

/** What a key deletion event carries: the key at the deletion revision, nothing else. */
export function tombstone(key: string, revision: number): KeyValue {
  return {
    key,
    value: EMPTY,
    createRevision: 0,
    modRevision: revision,
    version: 0,
    leaseId: 0,
    expireAt: undefined,
  };
}

/** The key-shaped part of a lock event: `/locks/<name>` at the event revision. */
export function lockEventKv(name: string, revision: number): KeyValue {
  return { ...tombstone(`${LOCK_EVENT_PREFIX}${name}`, revision) };
}

export class MemoryTenant {
  revision = 0;
  readonly fences = new Map<string, number>();
  readonly feed: MemoryFeed;
  private readonly records = new Map<string, KeyValue>();
  private readonly index = new BTree<string, undefined>(undefined, compareKeys);
  private readonly expiries = new BTree<ExpiryKey, undefined>(undefined, compareExpiry);
  readonly leases = new Map<number, MemoryLease>();
  private readonly leaseExpiries = new BTree<readonly [number, number], undefined>(
    undefined,
    (a, b) => a[0] - b[0] || a[1] - b[1],
  );
  private readonly locks = new Map<string, LockRecord>();
  private readonly lockIndex = new BTree<string, undefined>(undefined, compareKeys);
  private readonly lockExpiries = new BTree<ExpiryKey, undefined>(undefined, compareExpiry);
  private readonly commitWaiters = new Set<() => void>();

  constructor(
    readonly name: Tenant,
    retention: FeedRetention,
    private readonly onCommit: (tenant: Tenant, entry: FeedEntry) => void,
  ) {
    this.feed = new MemoryFeed(retention);
  }

  // ---- keys ----

  /** The key if it exists and neither its TTL nor its lease has run out (with the lease's expiry). */
  live(key: string, now: number): KeyValue | undefined {
    const kv = this.records.get(key);
    if (!kv) return undefined;
    if (kv.leaseId !== 0) {
      const lease = this.liveLease(kv.leaseId, now);
      return lease ? { ...kv, expireAt: lease.expireAt } : undefined;
    }
    return kv.expireAt === undefined || kv.expireAt > now ? kv : undefined;
  }

  /** Whether a key is stored but no longer live (its TTL or lease ran out, not yet swept). */
  isExpired(key: string, now: number): boolean {
    return this.records.has(key) && this.live(key, now) === undefined;
  }

  store(kv: KeyValue): void {
    this.remove(kv.key);
    this.records.set(kv.key, kv);
    this.index.set(kv.key, undefined);
    if (kv.expireAt !== undefined) this.expiries.set([kv.expireAt, kv.key], undefined);
    if (kv.leaseId !== 0) this.leases.get(kv.leaseId)?.keys.add(kv.key);
  }

  /** Removes a key (live or expired) from every index; returns what it held. */
  remove(key: string): KeyValue | undefined {
    const kv = this.records.get(key);
    if (!kv) return undefined;
    this.records.delete(key);
    this.index.delete(key);
    if (kv.expireAt !== undefined) this.expiries.delete([kv.expireAt, key]);
    if (kv.leaseId !== 0) this.leases.get(kv.leaseId)?.keys.delete(key);
    return kv;
  }

  /** Live keys in the range strictly after `after` (when given), in key order. */
  liveKeysIn(range: KeyRange, after: string | undefined, now: number): string[] {
    return this.keysIn(range, after, (key) => this.live(key, now) !== undefined);
  }

  /** Stored keys in the range that are no longer live. */
  expiredIn(range: KeyRange, now: number): string[] {
    return this.keysIn(range, undefined, (key) => this.isExpired(key, now));
  }

  private keysIn(
    range: KeyRange,
    after: string | undefined,
    keep: (key: string) => boolean,
  ): string[] {
    const keys: string[] = [];
    for (const key of this.index.keys(after ?? range.start)) {
      if (range.end !== undefined && compareKeys(key, range.end) >= 0) break;
      if (after !== undefined && key === after) continue;
      if (keep(key)) keys.push(key);
    }
    return keys;
  }

  // ---- leases ----

  liveLease(id: number, now: number): MemoryLease | undefined {
    const lease = this.leases.get(id);
    return lease && lease.expireAt > now ? lease : undefined;
  }

  addLease(lease: MemoryLease): void {
    this.leases.set(lease.id, lease);
    this.leaseExpiries.set([lease.expireAt, lease.id], undefined);
  }

  renewLease(lease: MemoryLease, expireAt: number): void {
    this.leaseExpiries.delete([lease.expireAt, lease.id]);
    lease.expireAt = expireAt;
    this.leaseExpiries.set([lease.expireAt, lease.id], undefined);
  }

  /** Ends a lease: its keys become EXPIRE events and its locks LOCK_EXPIRED events (appended to `events`). */
  endLease(
    lease: MemoryLease,
    revision: number,
    events: ChangeEvent[],
  ): { name: string; nonce: string }[] {
    this.leases.delete(lease.id);
    this.leaseExpiries.delete([lease.expireAt, lease.id]);
    for (const key of [...lease.keys].sort(compareKeys)) {
      const prev = this.remove(key);
      if (prev)
        events.push({
          kind: "expire",
          kv: tombstone(key, revision),
          prevKv: { ...prev, expireAt: lease.expireAt },
        });
    }
    const locks: { name: string; nonce: string }[] = [];
    for (const name of [...lease.locks].sort(compareKeys)) {
      const lock = this.removeLock(name);
      if (lock) {
        events.push({
          kind: "lock_expired",
          kv: lockEventKv(name, revision),
          prevKv: undefined,
          lock,
        });
        locks.push({ name, nonce: lock.nonce });
      }
    }
    return locks;
  }

  // ---- locks ----

  /** The lock record if its TTL (or its lease) has not run out. */
  liveLock(name: string, now: number): LockRecord | undefined {
    const lock = this.locks.get(name);
    if (!lock) return undefined;
    if (lock.leaseId !== 0) {
      const lease = this.liveLease(lock.leaseId, now);
      return lease ? { ...lock, expireAt: lease.expireAt } : undefined;
    }
    return lock.expireAt > now ? lock : undefined;
  }

  storeLock(lock: LockRecord): void {
    this.removeLock(lock.name);
    this.locks.set(lock.name, lock);
    this.lockIndex.set(lock.name, undefined);
    if (lock.leaseId !== 0) this.leases.get(lock.leaseId)?.locks.add(lock.name);
    else this.lockExpiries.set([lock.expireAt, lock.name], undefined);
  }

  removeLock(name: string): LockRecord | undefined {
    const lock = this.locks.get(name);
    if (!lock) return undefined;
    this.locks.delete(name);
    this.lockIndex.delete(name);
    if (lock.leaseId !== 0) this.leases.get(lock.leaseId)?.locks.delete(name);
    else this.lockExpiries.delete([lock.expireAt, name]);
    return lock;
  }

  /** Live lock names starting with `prefix`, in order. */
  lockNames(prefix: string, now: number): string[] {
    const names: string[] = [];
    for (const name of this.lockIndex.keys(prefix)) {
      if (!name.startsWith(prefix)) break;
      if (this.liveLock(name, now)) names.push(name);
    }
    return names;
  }

  // ---- expiry ----

  /**
   * Everything whose time has run out, up to `limit` items: keys (EXPIRE),
   * leases (their keys and locks) and lock records (LOCK_EXPIRED), appended
   * to `events`. Returns the locks that ended, whose node holds are to be freed.
   */
  expireDue(
    now: number,
    limit: number,
    revision: number,
    events: ChangeEvent[],
  ): { name: string; nonce: string }[] {
    const ended: { name: string; nonce: string }[] = [];
    const keys = due(this.expiries, now, limit);
    for (const key of keys) {
      const prev = this.remove(key);
      if (prev) events.push({ kind: "expire", kv: tombstone(key, revision), prevKv: prev });
    }
    const leases = due(this.leaseExpiries, now, limit - keys.length);
    for (const id of leases) {
      const lease = this.leases.get(id);
      if (lease) ended.push(...this.endLease(lease, revision, events));
    }
    for (const name of due(this.lockExpiries, now, limit - keys.length - leases.length)) {
      const lock = this.removeLock(name);
      if (!lock) continue;
      events.push({
        kind: "lock_expired",
        kv: lockEventKv(name, revision),
        prevKv: undefined,
        lock,
      });
      ended.push({ name, nonce: lock.nonce });
    }
    return ended;
  }

  /** When the next key, lease or lock is due (ms epoch). */
  nextExpireAt(): number | undefined {
    const next = [
      this.expiries.minKey()?.[0],
      this.leaseExpiries.minKey()?.[0],
      this.lockExpiries.minKey()?.[0],
    ].filter((t): t is number => t !== undefined);
    return next.length > 0 ? Math.min(...next) : undefined;
  }

  // ---- revisions ----

  /** Records a revision's events and advances the revision to it. */
  commit(entry: FeedEntry): void {
    this.revision = entry.revision;
    this.feed.append(entry, Date.now());
    this.onCommit(this.name, entry);
    const waiters = [...this.commitWaiters];
    this.commitWaiters.clear();
    for (const wake of waiters) wake();
  }

  /** Commits `events` at the next revision if there are any; returns the tenant revision. */
  commitIfAny(events: ChangeEvent[]): number {
    if (events.length > 0) this.commit({ revision: this.revision + 1, events });
    return this.revision;
  }

  /** Resolves at the next commit, after `ms`, or when `signal` aborts. */
  nextCommit(ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        this.commitWaiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal.addEventListener("abort", done, { once: true });
      this.commitWaiters.add(done);
    });
  }
}

/** Every tenant of the memory backend, created on first use. */
export class MemoryTenants {
  private readonly byName = new Map<Tenant, MemoryTenant>();
  private readonly commitListeners: ((tenant: Tenant, entry: FeedEntry) => void)[] = [];

  constructor(private readonly retention: FeedRetention) {}

  get(name: Tenant): MemoryTenant {
    let tenant = this.byName.get(name);
    if (!tenant) {
      tenant = new MemoryTenant(name, this.retention, (t, entry) => {
        for (const listener of this.commitListeners) listener(t, entry);
      });
      this.byName.set(name, tenant);
    }
    return tenant;
  }

  names(): Tenant[] {
    return [...this.byName.keys()];
  }

  /** Tells `listener` of every committed revision, synchronously, in order. */
  onCommit(listener: (tenant: Tenant, entry: FeedEntry) => void): void {
    this.commitListeners.push(listener);
  }
}

/** Up to `limit` members of an expiry index due by `now`, read without copying the index. */
function due<T extends string | number>(
  index: { entries(): IterableIterator<[readonly [number, T], undefined]> },
  now: number,
  limit: number,
): T[] {
  const members: T[] = [];
  if (limit <= 0) return members;
  for (const [[at, member]] of index.entries()) {
    if (at > now) break;
    members.push(member);
    if (members.length >= limit) break;
  }
  return members;
}
