/**
 * The fan-out hub (src/watch/watch-hub.ts) over an in-memory feed, with the
 * dispatch forced to yield to the event loop after every push (sliceWork 1),
 * so watchers join, take progress marks and are shut down in the middle of
 * an entry's dispatch. Each watcher must get exactly its filter's events, in
 * order, once; a progress mark R only after every event up to R; and a
 * resume revision that loses and repeats nothing. (The end-to-end property
 * test checks the same over real servers, where pauses are rarer.)
 */
import { setMaxListeners } from "node:events";
import { afterEach, describe, expect, it } from "vitest";
import { StateError } from "../../src/core/errors.js";
import { prefixEnd } from "../../src/core/keys.js";
import type { ChangeEvent, EventKind, FeedEntry } from "../../src/core/model.js";
import type { ChangeFeed, WatchFilter, WatchMessage } from "../../src/core/ports.js";
import { filterSignature, visibleEvents } from "../../src/core/watches.js";
import { WatchHub } from "../../src/watch/watch-hub.js";

/** mulberry32: a small seeded PRNG. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

class MemoryFeed implements ChangeFeed {
  readonly entries: FeedEntry[] = [];
  private wake = new Set<() => void>();

  append(events: ChangeEvent[]): void {
    this.entries.push({ revision: this.entries.length + 1, events });
    for (const w of [...this.wake]) w();
  }

  async read(_tenant: string, fromRevision: number, limit: number) {
    const from = Math.max(1, fromRevision);
    return {
      entries: this.entries.slice(from - 1, from - 1 + limit),
      oldestRevision: this.entries.length > 0 ? 1 : 0,
      revision: this.entries.length,
    };
  }

  async tail(
    _tenant: string,
    afterRevision: number,
    limit: number,
    blockMs: number,
    signal: AbortSignal,
  ): Promise<FeedEntry[]> {
    if (this.entries.length <= afterRevision && !signal.aborted) {
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          this.wake.delete(done);
          signal.removeEventListener("abort", done);
          resolve();
        };
        const timer = setTimeout(done, blockMs);
        this.wake.add(done);
        signal.addEventListener("abort", done);
      });
    }
    return this.entries.slice(afterRevision, afterRevision + limit);
  }
}

const KEYS = ["a/x", "a/y", "a/b/z", "b/y", "😀/k", "😁/k", "c"];
const KINDS: EventKind[] = ["put", "delete", "expire"];

function event(key: string, kind: EventKind): ChangeEvent {
  const kv = {
    key,
    value: new Uint8Array(0),
    createRevision: 1,
    modRevision: 1,
    version: 1,
    leaseId: 0,
    expireAt: undefined,
  };
  return { kind, kv, prevKv: kind === "put" ? undefined : kv };
}

function filterOf(random: () => number): WatchFilter {
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(random() * xs.length)]!;
  const isPrefix = random() < 0.7;
  const key = isPrefix ? pick(["", "a/", "a/b/", "b/", "😀", "\ud83d", "c"]) : pick(KEYS);
  // A lone-surrogate prefix cannot come through the API; here it only ever matches nothing extra.
  const kinds = random() < 0.3 ? new Set<EventKind>([pick(KINDS)]) : undefined;
  return {
    key,
    isPrefix,
    prefixEnd: isPrefix ? prefixEnd(key) : undefined,
    kinds,
    prevKv: random() < 0.5,
  };
}

function randomEntry(random: () => number): ChangeEvent[] {
  const n = 1 + Math.floor(random() * 3);
  return Array.from({ length: n }, () =>
    event(KEYS[Math.floor(random() * KEYS.length)]!, KINDS[Math.floor(random() * KINDS.length)]!),
  );
}

interface Log {
  readonly filter: WatchFilter;
  readonly fromRevision: number;
  readonly messages: WatchMessage[];
  error?: unknown;
  done: Promise<void>;
}

/** Reads a watch to its end, sometimes slowly (so queues build up). */
function consume(
  hub: WatchHub,
  filter: WatchFilter,
  fromRevision: number,
  progress: boolean,
  random: () => number,
  signal: AbortSignal,
): Log {
  const log: Log = { filter, fromRevision, messages: [], done: Promise.resolve() };
  const slow = random() < 0.3;
  log.done = (async () => {
    try {
      const stream = hub.watch(
        "t",
        { fromRevision, filter, progressIntervalMs: progress ? 1 : undefined },
        signal,
      );
      for await (const message of stream) {
        log.messages.push(message);
        if (slow) await new Promise((r) => setTimeout(r, random() < 0.5 ? 0 : 1));
      }
    } catch (error) {
      log.error = error;
    }
  })();
  return log;
}

/** The event messages `log` must receive from the feed's entries below `upTo`. */
function expectedOf(log: Log, entries: readonly FeedEntry[], upTo: number) {
  const first = log.messages[0];
  // A live watch starts after the revision it was established at: its first
  // message is that progress mark, or (had the feed moved on meanwhile) the
  // events it caught up with. A watch from history starts at fromRevision.
  const start =
    log.fromRevision !== 0
      ? log.fromRevision
      : first?.kind === "events"
        ? first.revision
        : (first?.revision ?? 0) + 1;
  return entries
    .filter((e) => e.revision >= start && e.revision < upTo)
    .map((e) => ({ revision: e.revision, events: visibleEvents(e.events, log.filter) }))
    .filter((m) => m.events.length > 0);
}

/** Checks `log`: its filter's events from its start up to `upTo`, in order, once; honest marks. */
function check(log: Log, entries: readonly FeedEntry[], upTo: number): void {
  expect(log.messages.some((m) => m.kind === "progress")).toBe(true);
  const expected = expectedOf(log, entries, upTo);
  const received = log.messages.filter((m) => m.kind === "events");
  expect(received.map((m) => m.revision)).toEqual(expected.map((m) => m.revision));
  for (let i = 0; i < expected.length; i++) {
    expect(received[i]!.kind === "events" && received[i]!.events).toEqual(expected[i]!.events);
  }
  // Bookmarks: a progress mark R only once every event up to R has been given.
  let seen = 0;
  for (const m of log.messages) {
    if (m.kind === "events") seen++;
    else expect(expected.slice(seen).every((e) => e.revision > m.revision)).toBe(true);
  }
}

const until = async (condition: () => boolean, ms = 10_000) => {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 2));
  }
};

/** Whatever a test started is stopped, pass or fail. */
const cleanup: (() => void)[] = [];
afterEach(() => {
  for (const stop of cleanup.splice(0)) stop();
});

describe("WatchHub with dispatch paused after every push", () => {
  for (const seed of [1, 2, 3]) {
    it(`delivers in order, once, with honest progress marks (seed ${seed})`, async () => {
      const random = rng(seed);
      const feed = new MemoryFeed();
      for (let i = 0; i < 20; i++) feed.append(randomEntry(random));
      const hub = new WatchHub(feed, {
        bufferLimit: 100_000,
        readBatch: 50,
        blockMs: 50,
        sliceWork: 1,
        onError: () => {},
      });
      const abort = new AbortController();
      // One signal ends every watcher of the run (each removes its listener on close).
      setMaxListeners(0, abort.signal);
      const logs: Log[] = [];
      cleanup.push(() => {
        abort.abort();
        hub.close();
      });
      const watchers = (n: number, fromRevision: () => number) => {
        for (let i = 0; i < n; i++) {
          logs.push(
            consume(hub, filterOf(random), fromRevision(), random() < 0.5, random, abort.signal),
          );
        }
      };
      watchers(60, () => 0);
      await until(() => logs.every((l) => l.messages.length > 0));
      // A backlog, with more watchers joining (live and from history) while it is dispatched.
      for (let i = 0; i < 200; i++) feed.append(randomEntry(random));
      watchers(30, () => 0);
      watchers(30, () => 1 + Math.floor(random() * feed.entries.length));
      for (let round = 0; round < 5; round++) {
        await new Promise((r) => setImmediate(r));
        for (let i = 0; i < 40; i++) feed.append(randomEntry(random));
      }
      const last = feed.entries.length;
      const events = (l: Log) => l.messages.filter((m) => m.kind === "events").length;
      await until(() =>
        logs.every(
          (l) => l.messages.length > 0 && events(l) >= expectedOf(l, feed.entries, last + 1).length,
        ),
      );
      // Room for a last progress mark or a stray extra message to show up.
      await new Promise((r) => setTimeout(r, 20));
      expect(hub.stats()).toEqual({
        tenants: 1,
        watchers: logs.length,
        groups: new Set(logs.map((l) => filterSignature(l.filter))).size,
      });
      abort.abort();
      await Promise.all(logs.map((l) => l.done));
      expect(hub.stats()).toEqual({ tenants: 0, watchers: 0, groups: 0 });
      for (const log of logs) {
        expect(log.error).toBeUndefined();
        check(log, feed.entries, last + 1);
      }
      hub.close();
    });

    it(`gives resume revisions that lose and repeat nothing when closed mid-dispatch (seed ${seed})`, async () => {
      const random = rng(100 + seed);
      const feed = new MemoryFeed();
      feed.append(randomEntry(random));
      const hub = new WatchHub(feed, {
        bufferLimit: 100_000,
        readBatch: 1000,
        blockMs: 50,
        sliceWork: 1,
        onError: () => {},
      });
      const abort = new AbortController();
      // One signal ends every watcher of the run (each removes its listener on close).
      setMaxListeners(0, abort.signal);
      cleanup.push(() => {
        abort.abort();
        hub.close();
      });
      const logs = Array.from({ length: 80 }, () =>
        consume(hub, filterOf(random), 0, random() < 0.5, random, abort.signal),
      );
      await until(() => logs.every((l) => l.messages.length > 0));
      for (let i = 0; i < 300; i++) feed.append(randomEntry(random));
      // Let the dispatch get part way.
      for (let i = 0; i < 20 + Math.floor(random() * 200); i++) {
        await new Promise((r) => setImmediate(r));
      }
      hub.close();
      await Promise.all(logs.map((l) => l.done));
      let partial = 0;
      for (const log of logs) {
        expect(log.error).toBeInstanceOf(StateError);
        const error = log.error as StateError;
        expect(error.reason).toBe("SHUTTING_DOWN");
        const resume = Number(error.metadata.resume_revision);
        // Everything before the resume revision was received; nothing after it.
        check(log, feed.entries, resume);
        const events = log.messages.filter((m) => m.kind === "events");
        const lastReceived = events.at(-1)?.revision ?? 0;
        expect(resume).toBeGreaterThan(lastReceived);
        if (resume <= feed.entries.length) partial++;
      }
      // The close did land mid-backlog for some watchers.
      expect(partial).toBeGreaterThan(0);
    });
  }
});
