/**
 * The fan-out hub: implements the ChangeStream port over a ChangeFeed. Each
 * tenant with watchers on this replica has ONE reader (a `tail` loop on the
 * tenant's feed); watchers with equal filters form a group, so matching and
 * message building happen once per group, not once per watcher (and the
 * group's one message object lets the API convert and the transport encode
 * it once). Exact-key groups are found by key, prefix groups through a
 * prefix index (a radix tree), so an entry costs O(its keys' length), not
 * O(groups). Dispatch yields to the event loop every SLICE_WORK
 * deliveries, so a backlog or a very large group never holds up Put acks
 * and other streams for long.
 *
 * A new watcher first catches up from the retained history (pull-based,
 * never dropping), then joins the live groups. Live delivery is push-based
 * into a bounded per-watcher queue; a watcher whose queue overflows is ended
 * with SLOW_CONSUMER and the revision to resume from, so nothing is skipped
 * silently. Every watcher gets a progress message once caught up, and
 * another whenever it has been idle for its progress interval.
 */
import { Reason, StateError } from "../core/errors.js";
import { getOrCreate } from "../core/maps.js";
import type { FeedEntry, Tenant } from "../core/model.js";
import type {
  ChangeFeed,
  ChangeStream,
  WatchFilter,
  WatchMessage,
  WatchRequest,
} from "../core/ports.js";
import { filterSignature, visibleEvents } from "../core/watches.js";
import { PrefixIndex } from "./prefix-index.js";

export interface WatchHubOptions {
  /** Messages a watcher may hold undelivered before it is ended with SLOW_CONSUMER. */
  readonly bufferLimit: number;
  /** Feed entries read per call, catching up or live. */
  readonly readBatch: number;
  /** How long one live read blocks waiting for new entries. */
  readonly blockMs: number;
  /** Dispatch work between yields to the event loop (default SLICE_WORK; tests use 1). */
  readonly sliceWork?: number;
  readonly onError: (error: unknown, tenant: Tenant) => void;
}

export interface WatchHubStats {
  readonly tenants: number;
  readonly watchers: number;
  readonly groups: number;
}

const resumeMetadata = (revision: number) => ({ resume_revision: String(revision) });

/**
 * Dispatch work (watchers pushed to, and groups matched, weighted by the
 * entry's events) done before the reader yields to the event loop. A push
 * to a waiting watcher sets off that stream's conversion, encoding and
 * write in microtasks that run when the reader next awaits, so this bounds
 * the time Put acks and other streams wait behind a fan-out: a backlog of
 * entries, or one entry for a very large group, is dispatched in slices.
 */
const SLICE_WORK = 256;

const yieldToLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Watchers sharing one filter: the visible events of an entry are computed once for all. */
interface Group {
  readonly signature: string;
  readonly filter: WatchFilter;
  readonly watchers: Set<Watcher>;
  /** The dispatch that last matched this group (so one entry reaches it once). */
  mark: number;
}

/** Groups of one key or prefix, by filter signature. */
type Groups = Map<string, Group>;

class Watcher implements AsyncIterable<WatchMessage> {
  /** The next revision this watcher needs (everything before was delivered or queued). */
  nextRevision = 0;
  synced = false;
  private queue: WatchMessage[] = [];
  private waiting: ((result: IteratorResult<WatchMessage>) => void) | undefined;
  private failWaiting: ((error: unknown) => void) | undefined;
  private spaceWaiter: (() => void) | undefined;
  private error: StateError | undefined;
  private finished = false;
  private progressTimer: NodeJS.Timeout | undefined;
  group: Group | undefined;

  constructor(
    readonly filter: WatchFilter,
    readonly signature: string,
    private readonly limit: number,
    private readonly progressIntervalMs: number | undefined,
    private readonly onProgressDue: (w: Watcher) => void,
    private readonly onClose: (w: Watcher) => void,
  ) {}

  get closed(): boolean {
    return this.finished || this.error !== undefined;
  }

  /**
   * Live push; false when the queue overflowed and the watcher was ended.
   * `result` is `{ value: message, done: false }`, shared by a group.
   */
  push(
    message: WatchMessage,
    result: IteratorResult<WatchMessage> = { value: message, done: false },
  ): boolean {
    if (this.closed) return false;
    if (this.waiting) {
      const resolve = this.waiting;
      this.waiting = undefined;
      this.failWaiting = undefined;
      resolve(result);
    } else if (this.queue.length >= this.limit) {
      // The queue is dropped: resume from its first event (or from this one).
      const first = this.queue.find((m) => m.kind === "events");
      const resume = first
        ? first.revision
        : message.kind === "events"
          ? message.revision
          : this.nextRevision;
      this.queue = [];
      this.fail(
        new StateError(
          "resource_exhausted",
          Reason.SLOW_CONSUMER,
          "the watcher fell too far behind; watch again from resume_revision",
          resumeMetadata(resume),
        ),
      );
      return false;
    } else {
      this.queue.push(message);
    }
    this.progressTimer?.refresh();
    return true;
  }

  /** Resolves once the queue has room (or the watcher closed). */
  async room(): Promise<void> {
    while (!this.closed && this.queue.length >= this.limit) {
      await new Promise<void>((resolve) => {
        this.spaceWaiter = resolve;
      });
    }
  }

  /** Catch-up push: waits for room instead of failing. */
  async pushPatiently(message: WatchMessage): Promise<void> {
    await this.room();
    this.push(message);
  }

  /**
   * The revision a client must resume from to lose nothing and repeat
   * nothing, when the watcher is ended by `fail` (which still delivers the
   * queued messages before the error, so they count as given). `position`
   * is the last revision dispatched to every live watcher.
   */
  resumeRevision(position: number): number {
    return this.synced ? Math.max(this.nextRevision, position + 1) : this.nextRevision;
  }

  startProgress(): void {
    if (this.progressIntervalMs === undefined || this.progressTimer) return;
    this.progressTimer = setInterval(() => {
      if (this.queue.length === 0 && this.waiting) this.onProgressDue(this);
    }, this.progressIntervalMs);
    this.progressTimer.unref();
  }

  /** Ends the stream with an error, after the messages already queued. */
  fail(error: StateError): void {
    if (this.closed) return;
    this.error = error;
    this.stopTimers();
    if (this.failWaiting && this.queue.length === 0) {
      const reject = this.failWaiting;
      this.waiting = undefined;
      this.failWaiting = undefined;
      reject(error);
    }
    this.wakeSpace();
    this.onClose(this);
  }

  private take(): Promise<IteratorResult<WatchMessage>> {
    const message = this.queue.shift();
    if (message) {
      this.wakeSpace();
      return Promise.resolve({ value: message, done: false });
    }
    if (this.error) return Promise.reject(this.error);
    if (this.finished) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => {
      this.waiting = resolve;
      this.failWaiting = reject;
    });
  }

  close(): void {
    if (this.finished) return;
    this.finished = true;
    this.queue = [];
    this.stopTimers();
    if (this.waiting) {
      const resolve = this.waiting;
      this.waiting = undefined;
      this.failWaiting = undefined;
      resolve({ value: undefined, done: true });
    }
    this.wakeSpace();
    this.onClose(this);
  }

  private wakeSpace(): void {
    const wake = this.spaceWaiter;
    this.spaceWaiter = undefined;
    wake?.();
  }

  private stopTimers(): void {
    clearInterval(this.progressTimer);
    this.progressTimer = undefined;
  }

  [Symbol.asyncIterator](): AsyncIterator<WatchMessage> {
    return {
      next: () => this.take(),
      return: async () => {
        this.close();
        return { value: undefined, done: true };
      },
    };
  }
}

/** One tenant's live reader and its watcher groups. */
class TenantChannel {
  /**
   * The last revision read from the feed (-1 until started): a watcher
   * caught up past it joins the live groups.
   */
  position = -1;
  /**
   * The last revision delivered to every live watcher it concerns (-1 until
   * started). It trails `position` while an entry's dispatch is paused, so
   * progress marks and resume revisions never claim an entry some watcher
   * has not been given yet.
   */
  delivered = -1;
  /** Exact-key groups by key. */
  private readonly exactGroups = new Map<string, Groups>();
  /** Prefix groups by prefix ("" = every key). */
  private readonly prefixGroups = new PrefixIndex<Groups>();
  private groups = 0;
  private readonly members = new Set<Watcher>();
  /** Dispatch counter, for Group.mark. */
  private dispatches = 0;
  /** Work done since the reader last yielded (see SLICE_WORK). */
  private work = 0;
  private readonly sliceWork: number;
  /** Scratch for one dispatch: the matched buckets, then the matched groups. */
  private readonly buckets: Groups[] = [];
  private readonly matched: Group[] = [];
  private starting: Promise<void> | undefined;
  private reader: AbortController | undefined;

  constructor(
    private readonly tenant: Tenant,
    private readonly feed: ChangeFeed,
    private readonly options: WatchHubOptions,
    private readonly onIdle: (channel: TenantChannel) => void,
  ) {
    this.sliceWork = Math.max(1, options.sliceWork ?? SLICE_WORK);
  }

  get watcherCount(): number {
    return this.members.size;
  }

  get groupCount(): number {
    return this.groups;
  }

  /** Learns the current revision and starts the reader, once. */
  start(): Promise<void> {
    if (!this.starting) {
      this.starting = (async () => {
        const { revision } = await this.feed.read(this.tenant, Number.MAX_SAFE_INTEGER, 0);
        this.position = revision;
        this.delivered = revision;
        this.reader = new AbortController();
        void this.readLoop(this.reader.signal);
      })();
      this.starting.catch(() => {
        this.starting = undefined;
      });
    }
    return this.starting;
  }

  admit(w: Watcher): void {
    this.members.add(w);
  }

  /** Moves a caught-up watcher into its live group. */
  join(w: Watcher): void {
    const { filter, signature } = w;
    let groups: Groups | undefined;
    if (filter.isPrefix) {
      groups = this.prefixGroups.get(filter.key);
      if (groups === undefined) {
        groups = new Map();
        this.prefixGroups.set(filter.key, groups);
      }
    } else {
      groups = getOrCreate(this.exactGroups, filter.key, () => new Map<string, Group>());
    }
    const group = getOrCreate(groups, signature, () => {
      this.groups++;
      return { signature, filter, watchers: new Set<Watcher>(), mark: 0 };
    });
    group.watchers.add(w);
    w.group = group;
    w.synced = true;
  }

  leave(w: Watcher): void {
    this.members.delete(w);
    const group = w.group;
    if (group) {
      group.watchers.delete(w);
      if (group.watchers.size === 0) {
        const { key, isPrefix } = group.filter;
        const groups = isPrefix ? this.prefixGroups.get(key) : this.exactGroups.get(key);
        if (groups?.delete(group.signature)) this.groups--;
        if (groups?.size === 0) {
          if (isPrefix) this.prefixGroups.delete(key);
          else this.exactGroups.delete(key);
        }
      }
      w.group = undefined;
    }
    if (this.members.size === 0) this.stop();
  }

  stop(): void {
    this.reader?.abort();
    this.reader = undefined;
    this.starting = undefined;
    this.position = -1;
    this.delivered = -1;
    this.onIdle(this);
  }

  failAll(error: (w: Watcher) => StateError): void {
    for (const w of [...this.members]) w.fail(error(w));
  }

  private async readLoop(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      let entries: FeedEntry[];
      try {
        entries = await this.feed.tail(
          this.tenant,
          this.position,
          this.options.readBatch,
          this.options.blockMs,
          signal,
        );
      } catch (error) {
        if (signal.aborted) return;
        this.options.onError(error, this.tenant);
        const position = this.delivered;
        this.failAll(
          (w) =>
            new StateError(
              "unavailable",
              Reason.BACKEND_UNAVAILABLE,
              "the changefeed is unreachable; watch again from resume_revision",
              resumeMetadata(w.resumeRevision(position)),
              error,
            ),
        );
        this.stop();
        return;
      }
      if (signal.aborted) return;
      this.work = 0;
      for (const entry of entries) {
        if (signal.aborted) return;
        if (entry.revision <= this.position) continue;
        if (entry.revision !== this.position + 1) {
          // History was trimmed past this reader: the missing revisions are gone.
          const position = this.delivered;
          this.failAll(
            (w) =>
              new StateError(
                "out_of_range",
                Reason.COMPACTED,
                "the changefeed was compacted past this watch",
                {
                  compact_revision: String(entry.revision),
                  ...resumeMetadata(w.resumeRevision(position)),
                },
              ),
          );
          this.stop();
          return;
        }
        this.position = entry.revision;
        if (!(await this.dispatch(entry, signal))) return;
        this.delivered = entry.revision;
      }
    }
  }

  /** Yields to the event loop once a slice of work is done; false if the reader was stopped. */
  private async pause(signal: AbortSignal): Promise<boolean> {
    if (this.work < this.sliceWork) return true;
    this.work = 0;
    await yieldToLoop();
    return !signal.aborted;
  }

  /**
   * The groups an entry may concern, each once: prefix groups whose prefix
   * starts an event's key (from the index), and exact groups of its keys.
   * Every candidate is then filtered by `visibleEvents` (the filter's own
   * semantics); the index only spares looking at the others.
   */
  private match(entry: FeedEntry): Group[] {
    const mark = ++this.dispatches;
    const { buckets, matched } = this;
    matched.length = 0;
    const hasPrefixes = this.prefixGroups.size > 0;
    const hasExact = this.exactGroups.size > 0;
    for (const event of entry.events) {
      const key = event.kv.key;
      buckets.length = 0;
      if (hasPrefixes) {
        // Keys are well-formed (validated on write); were one not, fall back
        // to every prefix group rather than trust unit-prefix matching.
        if (key.isWellFormed()) this.prefixGroups.collect(key, buckets);
        else for (const groups of this.prefixGroups.values()) buckets.push(groups);
      }
      if (hasExact) {
        const groups = this.exactGroups.get(key);
        if (groups !== undefined) buckets.push(groups);
      }
      for (const groups of buckets) {
        for (const group of groups.values()) {
          if (group.mark === mark) continue;
          group.mark = mark;
          matched.push(group);
        }
      }
    }
    buckets.length = 0;
    return matched;
  }

  /** Delivers one entry to its groups' watchers; false if the reader was stopped meanwhile. */
  private async dispatch(entry: FeedEntry, signal: AbortSignal): Promise<boolean> {
    const matched = this.match(entry);
    const weight = entry.events.length;
    this.work += weight;
    const revision = entry.revision;
    // `matched` stays intact across pauses: only this reader uses it, and a
    // stopped reader returns without touching it again.
    for (let g = 0; g < matched.length; g++) {
      const group = matched[g]!;
      this.work += weight;
      const events = visibleEvents(entry.events, group.filter);
      if (events.length === 0) {
        if (this.work >= this.sliceWork && !(await this.pause(signal))) return false;
        continue;
      }
      // One message (and iterator result) for the whole group: downstream
      // converts and encodes it once.
      const message: WatchMessage = { kind: "events", revision, events };
      const result: IteratorResult<WatchMessage> = { value: message, done: false };
      // A Set iterates live: watchers that leave meanwhile are skipped, and
      // any that join meanwhile already have nextRevision > revision.
      for (const w of group.watchers) {
        if (revision < w.nextRevision) continue;
        w.nextRevision = revision + 1;
        w.push(message, result);
        this.work++;
        if (this.work >= this.sliceWork && !(await this.pause(signal))) return false;
      }
    }
    matched.length = 0;
    return this.pause(signal);
  }
}

export class WatchHub implements ChangeStream {
  private readonly channels = new Map<Tenant, TenantChannel>();
  private closed = false;

  constructor(
    private readonly feed: ChangeFeed,
    private readonly options: WatchHubOptions,
  ) {}

  stats(): WatchHubStats {
    let watchers = 0;
    let groups = 0;
    for (const channel of this.channels.values()) {
      watchers += channel.watcherCount;
      groups += channel.groupCount;
    }
    return { tenants: this.channels.size, watchers, groups };
  }

  /** Ends every watch with UNAVAILABLE SHUTTING_DOWN (and its resume revision). */
  close(): void {
    this.closed = true;
    for (const channel of [...this.channels.values()]) {
      const position = channel.delivered;
      channel.failAll(
        (w) =>
          new StateError(
            "unavailable",
            Reason.SHUTTING_DOWN,
            "the server is shutting down; watch again from resume_revision",
            resumeMetadata(w.resumeRevision(position)),
          ),
      );
      channel.stop();
    }
  }

  watch(tenant: Tenant, request: WatchRequest, signal: AbortSignal): AsyncIterable<WatchMessage> {
    if (this.closed) {
      throw new StateError("unavailable", Reason.SHUTTING_DOWN, "the server is shutting down");
    }
    const channel = this.channelOf(tenant);
    const watcher: Watcher = new Watcher(
      request.filter,
      filterSignature(request.filter),
      this.options.bufferLimit,
      request.progressIntervalMs,
      (w) =>
        w.push({ kind: "progress", revision: Math.max(channel.delivered, w.nextRevision - 1) }),
      (w) => {
        signal.removeEventListener("abort", onAbort);
        channel.leave(w);
      },
    );
    const onAbort = () => watcher.close();
    signal.addEventListener("abort", onAbort, { once: true });
    channel.admit(watcher);
    void this.catchUp(channel, watcher, tenant, request.fromRevision).catch((error: unknown) => {
      watcher.fail(
        error instanceof StateError
          ? error
          : new StateError(
              "unavailable",
              Reason.BACKEND_UNAVAILABLE,
              "the changefeed is unreachable",
              resumeMetadata(watcher.nextRevision),
              error,
            ),
      );
    });
    return watcher;
  }

  private channelOf(tenant: Tenant): TenantChannel {
    let channel = this.channels.get(tenant);
    if (!channel) {
      channel = new TenantChannel(tenant, this.feed, this.options, (c) => {
        if (this.channels.get(tenant) === c && c.watcherCount === 0) this.channels.delete(tenant);
      });
      this.channels.set(tenant, channel);
    }
    return channel;
  }

  /** Delivers history from `fromRevision` up to the live position, then joins the live group. */
  private async catchUp(
    channel: TenantChannel,
    w: Watcher,
    tenant: Tenant,
    fromRevision: number,
  ): Promise<void> {
    await channel.start();
    if (w.closed) return;
    w.nextRevision = fromRevision === 0 ? channel.position + 1 : fromRevision;
    for (;;) {
      // Room for the progress message that follows the join; then re-check, as
      // the live position may have moved while waiting.
      await w.room();
      if (w.closed) return;
      if (w.nextRevision > channel.position) break;
      const { entries, oldestRevision } = await this.feed.read(
        tenant,
        w.nextRevision,
        this.options.readBatch,
      );
      if (w.closed) return;
      const first = entries[0];
      if (!first || first.revision !== w.nextRevision) {
        throw new StateError(
          "out_of_range",
          Reason.COMPACTED,
          `revision ${w.nextRevision} is older than the retained history; re-read, then watch from compact_revision or later`,
          { compact_revision: String(first?.revision ?? oldestRevision) },
        );
      }
      for (const entry of entries) {
        if (entry.revision !== w.nextRevision) {
          throw new StateError(
            "out_of_range",
            Reason.COMPACTED,
            "the changefeed was compacted during catch-up",
            {
              compact_revision: String(entry.revision),
            },
          );
        }
        const events = visibleEvents(entry.events, w.filter);
        if (events.length > 0)
          await w.pushPatiently({ kind: "events", revision: entry.revision, events });
        if (w.closed) return;
        // Only now: ended while waiting for room, it must resume at this entry.
        w.nextRevision = entry.revision + 1;
      }
    }
    // Synchronous from here: no live entry can slip between the check and the join.
    channel.join(w);
    w.push({ kind: "progress", revision: Math.max(channel.delivered, w.nextRevision - 1) });
    w.startProgress();
  }
}
