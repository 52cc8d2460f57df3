/**
 * The lock manager's domain: Acquire (try, or wait FIFO among this replica's
 * waiters), Extend, Release, Describe and List over two ports: LockNodes
 * (mutual exclusion, Redlock) and LockRecords (fencing tokens, lock records
 * and LOCK_* events in the state store).
 *
 * Acquire runs in three steps: take the lock on a quorum of nodes, mint the
 * fencing token in the state store (max of the nodes' counters and the
 * stored newest token, + 1; recorded with the LOCK_ACQUIRED event), write the
 * token back to the nodes. It answers only while the grant is still valid.
 *
 * Waiters sleep until the lock's LOCK_RELEASED or LOCK_EXPIRED event (read
 * from the changefeed, so releases through any replica wake them), until the
 * holder's hold on the nodes runs out, or after a short random pause when a
 * split vote left nobody holding it. Only the head of a name's queue tries;
 * a waiter whose client goes away leaves the queue at once.
 */
import { randomInt } from "node:crypto";
import { Reason, StateError } from "./errors.js";
import { prefixEnd, utf8Length } from "./keys.js";
import type { Limits } from "./limits.js";
import { getOrCreate } from "./maps.js";
import { LOCK_EVENT_PREFIX, type LockRecord, type Tenant } from "./model.js";
import type { ChangeStream, LeaseStore, LockNodes, LockRecords } from "./ports.js";
import { argumentError, checkName, checkNonNegative, checkTtl } from "./validate.js";

export interface AcquireInput {
  readonly name: string;
  readonly owner: string;
  readonly ttlMs: number | undefined;
  readonly leaseId: number;
  /** 0 = try once. */
  readonly waitMs: number;
}

export interface LockSettings {
  /** Longest lock TTL (and longest TTL of a lease holding locks). */
  readonly maxLockTtlMs: number;
}

export interface AcquireResult {
  readonly acquired: boolean;
  /** The lock granted, or the current holder. */
  readonly lock: LockRecord | undefined;
  readonly revision: number;
}

const MAX_OWNER_BYTES = 256;
/**
 * A waiting Acquire answers this share of the call's deadline early (within
 * bounds), so the answer reaches the client before its deadline does.
 */
const DEADLINE_MARGIN = { share: 0.1, minMs: 25, maxMs: 1000 } as const;

type Attempt =
  | { readonly kind: "granted"; readonly lock: LockRecord; readonly revision: number }
  | { readonly kind: "held"; readonly remainingMs: number }
  | { readonly kind: "split" };

/**
 * How a waiter becomes the head of its queue: to try at once (the previous
 * head left without the lock), or to wait for the release of the lock the
 * previous head just took (trying now would only meet that holder).
 */
type Promotion =
  | { readonly kind: "try" }
  | { readonly kind: "wait"; readonly mark: number; readonly expireAt: number };
const TRY: Promotion = { kind: "try" };

/** FIFO of one lock name's waiters on this replica: only the head tries. */
class WaitQueue {
  private readonly waiters: ((promotion: Promotion) => void)[] = [];

  get size(): number {
    return this.waiters.length;
  }

  /** `turn` resolves when the caller is at the head; `leave` promotes the next. */
  enter(): { turn: Promise<Promotion>; leave: (next: Promotion) => void } {
    let wake!: (promotion: Promotion) => void;
    const turn = new Promise<Promotion>((resolve) => {
      wake = resolve;
    });
    this.waiters.push(wake);
    if (this.waiters.length === 1) wake(TRY);
    return {
      turn,
      leave: (next) => {
        const i = this.waiters.indexOf(wake);
        if (i < 0) return;
        this.waiters.splice(i, 1);
        if (i === 0) this.waiters[0]?.(next);
      },
    };
  }
}

/** One tenant's stream of lock releases and expiries, shared by its waiters. */
class ReleaseFeed {
  /** Releases seen per lock name since the feed started. */
  private readonly seen = new Map<string, number>();
  private readonly listeners = new Map<string, Set<() => void>>();
  private readonly abort = new AbortController();
  readonly established: Promise<void>;
  users = 0;

  constructor(
    stream: ChangeStream,
    tenant: Tenant,
    onError: (error: unknown) => void,
    onEnd: () => void,
  ) {
    let ready!: () => void;
    this.established = new Promise((resolve) => {
      ready = resolve;
    });
    const messages = stream.watch(
      tenant,
      {
        fromRevision: 0,
        filter: {
          key: LOCK_EVENT_PREFIX,
          isPrefix: true,
          prefixEnd: prefixEnd(LOCK_EVENT_PREFIX),
          kinds: new Set(["lock_released", "lock_expired"]),
          prevKv: false,
        },
        progressIntervalMs: undefined,
      },
      this.abort.signal,
    );
    void (async () => {
      try {
        for await (const message of messages) {
          ready();
          if (message.kind !== "events") continue;
          for (const event of message.events) {
            const name = event.kv.key.slice(LOCK_EVENT_PREFIX.length);
            this.seen.set(name, (this.seen.get(name) ?? 0) + 1);
            for (const listener of this.listeners.get(name) ?? []) listener();
          }
        }
      } catch (error) {
        if (!this.abort.signal.aborted) onError(error);
      } finally {
        ready();
        onEnd();
        // Wake everyone: they fall back to the holder's expiry until a new feed starts.
        for (const set of this.listeners.values()) for (const listener of set) listener();
      }
    })();
  }

  mark(name: string): number {
    return this.seen.get(name) ?? 0;
  }

  /** Resolves at the first release of `name` after `mark`, after `ms`, or on abort. */
  wait(name: string, mark: number, ms: number, signal: AbortSignal): Promise<void> {
    if (this.mark(name) !== mark || this.abort.signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const set = getOrCreate(this.listeners, name, () => new Set<() => void>());
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        set.delete(done);
        if (set.size === 0) this.listeners.delete(name);
        resolve();
      };
      const timer = setTimeout(done, Math.max(0, ms));
      signal.addEventListener("abort", done, { once: true });
      set.add(done);
    });
  }

  stop(): void {
    this.abort.abort();
  }
}

export class Locks {
  private readonly queues = new Map<string, WaitQueue>();
  private readonly feeds = new Map<Tenant, ReleaseFeed>();

  constructor(
    private readonly nodes: LockNodes,
    private readonly records: LockRecords,
    private readonly leases: LeaseStore,
    private readonly stream: ChangeStream,
    private readonly limits: Limits,
    private readonly settings: LockSettings,
    private readonly onError: (error: unknown) => void,
  ) {}

  /**
   * Takes the lock, waiting up to `input.waitMs` (and no later than
   * `deadlineAt`, ms epoch). Not acquired is a result, not an error.
   */
  async acquire(
    tenant: Tenant,
    input: AcquireInput,
    signal: AbortSignal,
    deadlineAt: number,
  ): Promise<AcquireResult> {
    this.checkAcquire(input);
    let nodeTtlMs: number;
    if (input.leaseId !== 0) {
      const { lease } = await this.leases.getLease(tenant, input.leaseId, false);
      if (!lease) throw leaseNotFound(input.leaseId);
      if (lease.grantedTtlMs > this.settings.maxLockTtlMs) {
        throw argumentError(
          "lease_id",
          `a lease holding locks may live at most ${this.settings.maxLockTtlMs} ms between renewals; this one has ttl ${lease.grantedTtlMs} ms`,
        );
      }
      // On the nodes, the hold ends when the lease does (renewals extend it).
      nodeTtlMs = Math.max(1, lease.expireAt - Date.now());
    } else {
      nodeTtlMs = input.ttlMs!;
    }

    // Idempotent: the same owner asking again gets the same grant back.
    const current = await this.records.getLock(tenant, input.name);
    if (current.lock && current.lock.owner === input.owner) {
      return { acquired: true, lock: current.lock, revision: current.revision };
    }

    const now = Date.now();
    const margin = Math.min(
      DEADLINE_MARGIN.maxMs,
      Math.max(DEADLINE_MARGIN.minMs, (deadlineAt - now) * DEADLINE_MARGIN.share),
    );
    const waitUntil = Math.min(now + input.waitMs, deadlineAt - margin);
    const queued = this.queues.has(`${tenant}\u0000${input.name}`);
    if (input.waitMs === 0 || waitUntil <= Date.now() || !queued) {
      // A try-lock, or nobody of this replica queued before us: one try first,
      // and only if it fails the waiting machinery (FIFO is kept: a queue exists
      // only while someone waits, and then we join it without trying).
      const attempt = await this.attempt(tenant, input, nodeTtlMs);
      if (attempt.kind === "granted" || input.waitMs === 0 || waitUntil <= Date.now()) {
        return this.settle(tenant, input.name, attempt);
      }
    }
    return this.waitFor(tenant, input, nodeTtlMs, waitUntil, signal);
  }

  async extend(
    tenant: Tenant,
    name: string,
    token: number,
    ttlMs: number | undefined,
  ): Promise<{
    status: "extended" | "not_found" | "not_owner";
    lock: LockRecord | undefined;
    revision: number;
  }> {
    checkName(name, "name", this.limits);
    checkNonNegative(token, "fencing_token");
    if (ttlMs === undefined)
      throw new StateError("invalid_argument", Reason.INVALID_TTL, "ttl is required", {
        field: "ttl",
      });
    this.checkLockTtl(ttlMs);
    const { lock, revision } = await this.records.getLock(tenant, name);
    if (!lock) return { status: "not_found", lock: undefined, revision };
    if (lock.fencingToken !== token) return { status: "not_owner", lock: undefined, revision };
    if (lock.leaseId !== 0) {
      throw new StateError(
        "failed_precondition",
        Reason.INVALID_ARGUMENT,
        "this lock lives as long as its lease; renew the lease instead",
        { lease_id: String(lock.leaseId) },
      );
    }
    const extended = await this.nodes.extend(tenant, name, lock.nonce, ttlMs);
    if (!extended.extended) {
      // The nodes no longer hold it under this grant: it has run out.
      return { status: "not_found", lock: undefined, revision };
    }
    return this.records.extendLock(tenant, name, token, extended.startedAt + extended.validityMs);
  }

  async release(
    tenant: Tenant,
    name: string,
    token: number,
  ): Promise<{ status: "released" | "not_found" | "not_owner"; revision: number }> {
    checkName(name, "name", this.limits);
    checkNonNegative(token, "fencing_token");
    // Free the nodes first, by token (only that grant's holds go): waiters woken
    // by LOCK_RELEASED must find the lock free. The record then says whether
    // the token held it (RELEASED) or not (NOT_OWNER, NOT_FOUND).
    await this.nodes.release(tenant, name, String(token));
    return this.records.releaseLock(tenant, name, token);
  }

  async describe(
    tenant: Tenant,
    name: string,
  ): Promise<{ lock: LockRecord | undefined; revision: number }> {
    checkName(name, "name", this.limits);
    return this.records.getLock(tenant, name);
  }

  async list(tenant: Tenant, prefix: string): Promise<{ locks: LockRecord[]; revision: number }> {
    checkName(prefix, "prefix", this.limits, true);
    return this.records.listLocks(tenant, prefix);
  }

  /** Ends every waiting Acquire's release feed (shutdown). */
  close(): void {
    for (const feed of this.feeds.values()) feed.stop();
    this.feeds.clear();
  }

  private checkAcquire(input: AcquireInput): void {
    checkName(input.name, "name", this.limits);
    if (input.owner === "") throw argumentError("owner", "owner is required");
    if (utf8Length(input.owner) > MAX_OWNER_BYTES) {
      throw new StateError(
        "invalid_argument",
        Reason.TOO_LARGE,
        `owner is longer than ${MAX_OWNER_BYTES} bytes`,
        {
          field: "owner",
          limit: String(MAX_OWNER_BYTES),
        },
      );
    }
    checkNonNegative(input.leaseId, "lease_id");
    if (input.ttlMs !== undefined && input.leaseId !== 0)
      throw argumentError("ttl", "ttl and lease_id are exclusive");
    if (input.ttlMs === undefined && input.leaseId === 0) {
      throw new StateError(
        "invalid_argument",
        Reason.INVALID_TTL,
        "one of ttl or lease_id is required",
        { field: "ttl" },
      );
    }
    if (input.ttlMs !== undefined) this.checkLockTtl(input.ttlMs);
    if (!Number.isFinite(input.waitMs) || input.waitMs < 0)
      throw argumentError("wait_timeout", "wait_timeout must not be negative");
  }

  private checkLockTtl(ttlMs: number): void {
    checkTtl(ttlMs, "ttl", {
      ...this.limits,
      maxTtlMs: Math.min(this.limits.maxTtlMs, this.settings.maxLockTtlMs),
    });
  }

  /** One try: take the nodes, mint the token, confirm it on the nodes. */
  private async attempt(tenant: Tenant, input: AcquireInput, nodeTtlMs: number): Promise<Attempt> {
    const taken = await this.nodes.acquire(tenant, input.name, input.owner, nodeTtlMs);
    if (taken.kind !== "granted") return taken;
    const undo = () => this.nodes.release(tenant, input.name, taken.nonce).catch(this.onError);
    let granted: Awaited<ReturnType<LockRecords["grantLock"]>>;
    try {
      granted = await this.records.grantLock(tenant, {
        name: input.name,
        owner: input.owner,
        nonce: taken.nonce,
        nodeCounter: taken.counter,
        acquireAt: taken.startedAt,
        expireAt: taken.startedAt + taken.validityMs,
        leaseId: input.leaseId,
      });
    } catch (error) {
      await undo();
      throw error;
    }
    if (granted.kind === "lease_not_found") {
      await undo();
      throw leaseNotFound(input.leaseId);
    }
    const token = granted.lock.fencingToken;
    const confirmed = await this.nodes
      .confirm(tenant, input.name, taken.nonce, token)
      .catch((error: unknown) => {
        this.onError(error);
        return false;
      });
    const valid = taken.startedAt + taken.validityMs - Date.now() > 0;
    if (!confirmed || !valid) {
      // Never hand out a lock that is not certainly held: undo it (the token
      // stays burnt). A quorum answered a moment ago, so this is most likely a
      // slow node or an expired hold: try again (a waiting Acquire) rather than
      // report NO_QUORUM; if the nodes are really gone, the next try says so.
      await undo();
      await this.records.releaseLock(tenant, input.name, token).catch(this.onError);
      return { kind: "split" };
    }
    return { kind: "granted", lock: granted.lock, revision: granted.revision };
  }

  private async settle(tenant: Tenant, name: string, attempt: Attempt): Promise<AcquireResult> {
    if (attempt.kind === "granted")
      return { acquired: true, lock: attempt.lock, revision: attempt.revision };
    const { lock, revision } = await this.records.getLock(tenant, name);
    return { acquired: false, lock, revision };
  }

  private async waitFor(
    tenant: Tenant,
    input: AcquireInput,
    nodeTtlMs: number,
    waitUntil: number,
    signal: AbortSignal,
  ): Promise<AcquireResult> {
    const queueKey = `${tenant}\u0000${input.name}`;
    const queue = getOrCreate(this.queues, queueKey, () => new WaitQueue());
    const feed = this.feedOf(tenant);
    feed.users++;
    const place = queue.enter();
    let next: Promotion = TRY;
    try {
      await feed.established;
      let last: Attempt | undefined;
      // Our turn at the head of this replica's queue.
      const promotion = await settledWithin(place.turn, waitUntil - Date.now(), signal);
      if (promotion?.kind === "wait") {
        // The head before us just took the lock: wait for its release (or expiry).
        const left = waitUntil - Date.now();
        await feed.wait(
          input.name,
          promotion.mark,
          Math.min(promotion.expireAt - Date.now() + 1, left),
          signal,
        );
      }
      while (promotion !== undefined) {
        if (signal.aborted) break;
        if (waitUntil - Date.now() <= 0) break;
        const mark = feed.mark(input.name);
        last = await this.attempt(tenant, input, nodeTtlMs);
        if (last.kind === "granted") {
          next = { kind: "wait", mark: feed.mark(input.name), expireAt: last.lock.expireAt };
          return this.settle(tenant, input.name, last);
        }
        const until = waitUntil - Date.now();
        if (until <= 0) break;
        // Sleep until a release or expiry of this lock, the holder's hold runs out,
        // or (after a split vote, which nobody will release) a short random pause.
        const pause = last.kind === "held" ? last.remainingMs + 1 : randomInt(2, 12);
        await feed.wait(input.name, mark, Math.min(pause, until), signal);
      }
      if (signal.aborted)
        throw new StateError("cancelled", Reason.CANCELLED, "the client went away");
      return this.settle(tenant, input.name, last ?? { kind: "split" });
    } finally {
      place.leave(next);
      if (queue.size === 0) this.queues.delete(queueKey);
      feed.users--;
      if (feed.users === 0) {
        feed.stop();
        if (this.feeds.get(tenant) === feed) this.feeds.delete(tenant);
      }
    }
  }

  private feedOf(tenant: Tenant): ReleaseFeed {
    let feed = this.feeds.get(tenant);
    if (!feed) {
      const created: ReleaseFeed = new ReleaseFeed(this.stream, tenant, this.onError, () => {
        if (this.feeds.get(tenant) === created) this.feeds.delete(tenant);
      });
      feed = created;
      this.feeds.set(tenant, feed);
    }
    return feed;
  }
}

function leaseNotFound(leaseId: number): StateError {
  return new StateError("not_found", Reason.LEASE_NOT_FOUND, `lease ${leaseId} not found`, {
    lease_id: String(leaseId),
  });
}

/** The value of `promise` if it settles within `ms` and before `signal` aborts; the timer never outlives the race. */
function settledWithin<T>(
  promise: Promise<T>,
  ms: number,
  signal: AbortSignal,
): Promise<T | undefined> {
  if (signal.aborted || ms <= 0) return Promise.resolve(undefined);
  return new Promise((resolve) => {
    const finish = (value: T | undefined) => {
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
      resolve(value);
    };
    const onAbort = () => finish(undefined);
    const timer = setTimeout(() => finish(undefined), ms);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(finish);
  });
}
