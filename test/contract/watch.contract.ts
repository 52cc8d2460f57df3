/**
 * The watch conformance suite: etcd's six guarantees (ordered, unique,
 * atomic, reliable, resumable, bookmarkable), every event kind, filters,
 * compaction edges, progress, slow consumers. Runs against every backend
 * through a real server and a real gRPC client.
 */
import { randomBytes } from "node:crypto";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { type Client, Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorInfoSchema } from "../../src/gen/google/rpc/error_details_pb.js";
import { KvService } from "../../src/gen/latchkey/v1/kv_pb.js";
import {
  EventKind,
  type WatchRequestSchema,
  WatchService,
} from "../../src/gen/latchkey/v1/watch_pb.js";

type WatchRequest = MessageInitShape<typeof WatchRequestSchema>;

import { connectClients, type Protocol } from "../support/clients.js";
import { expectError } from "../support/errors.js";
import type { TestServer } from "../support/test-server.js";
import { WatchReader } from "../support/watch-reader.js";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array | undefined) => new TextDecoder().decode(b);

export interface WatchContractOptions {
  /** Starts a server with extra LATCHKEY_* settings. */
  readonly start: (env?: Record<string, string>) => Promise<TestServer>;
  readonly protocol?: Protocol;
}

/**
 * A server of its own with `env` for the describe block that calls this
 * (started before its tests, closed after): returns its clients.
 */
function ownServer(options: WatchContractOptions, env: Record<string, string>) {
  let own: TestServer | undefined;
  let ownClients: ReturnType<typeof connectClients> | undefined;
  beforeAll(async () => {
    own = await options.start(env);
    ownClients = connectClients(own.baseUrl, options.protocol ?? "grpc");
  });
  afterAll(async () => {
    ownClients?.close();
    await own?.close();
  });
  return () => ownClients!;
}

export function describeWatchContract(name: string, options: WatchContractOptions): void {
  describe(`WatchService conformance: ${name}`, () => {
    let server: TestServer;
    let clients: ReturnType<typeof connectClients>;
    let kv: Client<typeof KvService>;
    let watch: Client<typeof WatchService>;
    const readers: WatchReader[] = [];

    beforeAll(async () => {
      server = await options.start({ LATCHKEY_WATCH_PROGRESS_INTERVAL_MS: "200" });
      clients = connectClients(server.baseUrl, options.protocol ?? "grpc");
      kv = clients.client(KvService);
      watch = clients.client(WatchService);
    });
    afterAll(async () => {
      for (const r of readers) r.close();
      clients?.close();
      await server?.close();
    });

    const fresh = () => `w-${randomBytes(4).toString("hex")}/`;
    const open = (req: WatchRequest, c = watch) => {
      const reader = new WatchReader((signal) => c.watch(req, { signal }));
      readers.push(reader);
      return reader;
    };
    /** Opens a watch and waits for its first (progress) message: the watch is established. */
    const established = async (req: WatchRequest, c = watch) => {
      const reader = open(req, c);
      const first = await reader.next();
      expect(first.events).toEqual([]);
      return { reader, revision: first.header!.revision };
    };

    it("starts with a progress message at the current revision", async () => {
      const p = fresh();
      const put = await kv.put({ key: `${p}a`, value: enc("1") });
      const { revision } = await established({ prefix: p });
      expect(revision).toBeGreaterThanOrEqual(put.header!.revision);
    });

    it("delivers PUT with the key as written, and DELETE with a tombstone and prev_kv", async () => {
      const p = fresh();
      const { reader } = await established({ key: `${p}a`, prevKv: true });
      const put = await kv.put({ key: `${p}a`, value: enc("v1") });
      const m1 = await reader.nextEvents();
      expect(m1.header!.revision).toBe(put.header!.revision);
      expect(m1.events).toHaveLength(1);
      expect(m1.events[0]!.kind).toBe(EventKind.PUT);
      expect(m1.events[0]!.kv).toMatchObject({
        key: `${p}a`,
        version: 1n,
        modRevision: put.header!.revision,
      });
      expect(dec(m1.events[0]!.kv!.value)).toBe("v1");
      expect(m1.events[0]!.prevKv).toBeUndefined();

      const del = await kv.delete({ key: `${p}a` });
      const m2 = await reader.nextEvents();
      expect(m2.events[0]!.kind).toBe(EventKind.DELETE);
      expect(m2.events[0]!.kv).toMatchObject({
        key: `${p}a`,
        version: 0n,
        modRevision: del.header!.revision,
      });
      expect(m2.events[0]!.kv!.value.length).toBe(0);
      expect(dec(m2.events[0]!.prevKv!.value)).toBe("v1");
    });

    it("delivers EXPIRE when a TTL ends, with no request touching the key", async () => {
      const p = fresh();
      const { reader } = await established({ prefix: p, prevKv: true });
      await kv.put({ key: `${p}t`, value: enc("x"), ttl: { seconds: 0n, nanos: 50_000_000 } });
      const put = await reader.nextEvents();
      expect(put.events[0]!.kind).toBe(EventKind.PUT);
      const expire = await reader.nextEvents(3000);
      expect(expire.events).toHaveLength(1);
      expect(expire.events[0]!.kind).toBe(EventKind.EXPIRE);
      expect(expire.events[0]!.kv!.key).toBe(`${p}t`);
      expect(expire.events[0]!.prevKv!.version).toBe(1n);
      expect(expire.header!.revision).toBeGreaterThan(put.header!.revision);
      await reader.quiet(200);
    });

    it("omits prev_kv unless asked", async () => {
      const p = fresh();
      await kv.put({ key: `${p}a`, value: enc("1") });
      const { reader } = await established({ key: `${p}a` });
      await kv.put({ key: `${p}a`, value: enc("2") });
      const m = await reader.nextEvents();
      expect(m.events[0]!.prevKv).toBeUndefined();
    });

    it("filters by key, prefix and kind", async () => {
      const p = fresh();
      const { reader: onlyA } = await established({ key: `${p}a` });
      const { reader: dir } = await established({ prefix: `${p}d/` });
      const { reader: deletes } = await established({ prefix: p, kinds: [EventKind.DELETE] });
      await kv.put({ key: `${p}b`, value: enc("x") });
      await kv.put({ key: `${p}d/1`, value: enc("x") });
      await kv.put({ key: `${p}a`, value: enc("x") });
      await kv.delete({ key: `${p}b` });
      expect((await onlyA.nextEvents()).events.map((e) => e.kv!.key)).toEqual([`${p}a`]);
      expect((await dir.nextEvents()).events.map((e) => e.kv!.key)).toEqual([`${p}d/1`]);
      const d = await deletes.nextEvents();
      expect(d.events.map((e) => [e.kind, e.kv!.key])).toEqual([[EventKind.DELETE, `${p}b`]]);
      await Promise.all([onlyA.quiet(150), dir.quiet(150), deletes.quiet(150)]);
    });

    it("an empty key and prefix watch everything of the tenant", async () => {
      const p = fresh();
      const { reader } = await established({});
      await kv.put({ key: `${p}x`, value: enc("1") });
      const m = await reader.nextEvents();
      expect(m.events.some((e) => e.kv!.key === `${p}x`)).toBe(true);
    });

    it("is atomic: all events of one Txn and of one prefix delete arrive in one message", async () => {
      const p = fresh();
      const { reader } = await established({ prefix: p });
      const txn = await kv.txn({
        success: ["a", "b", "c"].map((k) => ({
          request: { case: "put" as const, value: { key: `${p}${k}`, value: enc(k) } },
        })),
      });
      const m = await reader.nextEvents();
      expect(m.header!.revision).toBe(txn.header!.revision);
      expect(m.events.map((e) => e.kv!.key)).toEqual([`${p}a`, `${p}b`, `${p}c`]);
      const del = await kv.delete({ prefix: p });
      const d = await reader.nextEvents();
      expect(d.header!.revision).toBe(del.header!.revision);
      expect(d.events.map((e) => e.kind)).toEqual([
        EventKind.DELETE,
        EventKind.DELETE,
        EventKind.DELETE,
      ]);
    });

    it("is ordered, unique and reliable under concurrent writers", async () => {
      const p = fresh();
      const { reader } = await established({ prefix: p });
      const writes = await Promise.all(
        Array.from({ length: 4 }, async (_, w) => {
          const revisions: bigint[] = [];
          for (let i = 0; i < 25; i++)
            revisions.push(
              (await kv.put({ key: `${p}${w}`, value: enc(String(i)) })).header!.revision,
            );
          return revisions;
        }),
      );
      const acknowledged = writes.flat().sort((a, b) => (a < b ? -1 : 1));
      const messages = await reader.events(100, 10_000);
      const delivered = messages.map((m) => m.header!.revision);
      expect(delivered).toEqual(acknowledged);
      for (const m of messages)
        for (const e of m.events) expect(e.kv!.modRevision).toBe(m.header!.revision);
      await reader.quiet(100);
    });

    it("resumes from last seen + 1 with nothing lost and nothing repeated", async () => {
      const p = fresh();
      const first = await established({ prefix: p });
      for (let i = 0; i < 5; i++) await kv.put({ key: `${p}k`, value: enc(String(i)) });
      const got = await first.reader.events(2);
      first.reader.close();
      const last = got[got.length - 1]!.header!.revision;
      for (let i = 5; i < 8; i++) await kv.put({ key: `${p}k`, value: enc(String(i)) });
      const resumed = open({ prefix: p, startRevision: last + 1n });
      const rest = await resumed.events(6);
      expect(rest.map((m) => dec(m.events[0]!.kv!.value))).toEqual(["2", "3", "4", "5", "6", "7"]);
      expect(rest[0]!.header!.revision).toBe(last + 1n);
      await resumed.quiet(100);
    });

    it("replays from an old start_revision, then continues live", async () => {
      const p = fresh();
      const first = await kv.put({ key: `${p}k`, value: enc("0") });
      await kv.put({ key: `${p}k`, value: enc("1") });
      const reader = open({ key: `${p}k`, startRevision: first.header!.revision });
      const replay = await reader.events(2);
      expect(replay.map((m) => dec(m.events[0]!.kv!.value))).toEqual(["0", "1"]);
      await kv.put({ key: `${p}k`, value: enc("2") });
      expect(dec((await reader.nextEvents()).events[0]!.kv!.value)).toBe("2");
    });

    it("waits for a future start_revision", async () => {
      const p = fresh();
      const now = (await kv.get({ key: `${p}x` })).header!.revision;
      const reader = open({ prefix: p, startRevision: now + 3n });
      await kv.put({ key: `${p}1`, value: enc("skipped") });
      await kv.put({ key: `${p}2`, value: enc("skipped") });
      await kv.put({ key: `${p}3`, value: enc("seen") });
      const m = await reader.nextEvents();
      expect(dec(m.events[0]!.kv!.value)).toBe("seen");
    });

    it("never reports progress below start_revision - 1, also for a future start", async () => {
      // Resuming from "last revision seen + 1" must never move a client back.
      const p = fresh();
      const now = (await kv.get({ key: `${p}x` })).header!.revision;
      const reader = open({ prefix: p, startRevision: now + 1000n, progressNotify: true });
      for (const message of [await reader.next(2000), await reader.next(2000)]) {
        expect(message.events).toEqual([]);
        expect(message.header!.revision).toBe(now + 999n);
      }
    });

    it("bookmarks: progress_notify sends progress at revision R only after everything up to R", async () => {
      const p = fresh();
      const { reader } = await established({ prefix: p, progressNotify: true });
      const put = await kv.put({ key: `${p}a`, value: enc("1") });
      const m = await reader.nextEvents();
      expect(m.header!.revision).toBe(put.header!.revision);
      const progress = await reader.next(2000);
      expect(progress.events).toEqual([]);
      expect(progress.header!.revision).toBeGreaterThanOrEqual(put.header!.revision);
      const again = await reader.next(2000);
      expect(again.events).toEqual([]);
    });

    it("refuses a negative start_revision, key with prefix, unknown kinds and bad keys", async () => {
      const p = fresh();
      await expectError(
        open({ key: `${p}a`, startRevision: -1n }).next(),
        Code.InvalidArgument,
        "INVALID_ARGUMENT",
      );
      await expectError(
        open({ key: `${p}a`, prefix: p }).next(),
        Code.InvalidArgument,
        "INVALID_ARGUMENT",
      );
      await expectError(
        open({ prefix: p, kinds: [99 as EventKind] }).next(),
        Code.InvalidArgument,
        "INVALID_ARGUMENT",
      );
      await expectError(open({ key: "a\u0000" }).next(), Code.InvalidArgument, "INVALID_KEY");
    });

    describe("with a short history", () => {
      const smallClients = ownServer(options, { LATCHKEY_WATCH_HISTORY: "5" });

      it("fails below the retained history with OUT_OF_RANGE COMPACTED and compact_revision; the oldest retained works", async () => {
        const skv = smallClients().client(KvService);
        const sw = smallClients().client(WatchService);
        const p = fresh();
        let last = 0n;
        for (let i = 0; i < 20; i++)
          last = (await skv.put({ key: `${p}k`, value: enc(String(i)) })).header!.revision;
        const below = open({ prefix: p, startRevision: 1n }, sw);
        const meta = await expectError(below.next(), Code.OutOfRange, "COMPACTED");
        const oldest = BigInt(meta.compact_revision!);
        expect(oldest).toBeGreaterThan(1n);
        expect(oldest).toBeLessThanOrEqual(last - 4n);
        // Exactly the oldest retained revision is still served...
        const atOldest = open({ prefix: p, startRevision: oldest }, sw);
        const first = await atOldest.nextEvents();
        expect(first.header!.revision).toBe(oldest);
        // ...one below it is not.
        await expectError(
          open({ prefix: p, startRevision: oldest - 1n }, sw).next(),
          Code.OutOfRange,
          "COMPACTED",
        );
        // A future revision waits instead of failing.
        const future = open({ prefix: p, startRevision: last + 1n }, sw);
        await skv.put({ key: `${p}k`, value: enc("next") });
        expect(dec((await future.nextEvents()).events[0]!.kv!.value)).toBe("next");
      });
    });

    describe("with a 4-message watcher buffer", () => {
      const smallClients = ownServer(options, { LATCHKEY_WATCHER_BUFFER: "4" });

      it("ends a watcher that does not read with RESOURCE_EXHAUSTED SLOW_CONSUMER; resuming loses nothing", async () => {
        const skv = smallClients().client(KvService);
        const sw = smallClients().client(WatchService);
        const p = fresh();
        const reader = open({ prefix: p }, sw);
        const start = (await reader.next()).header!.revision;
        // Large values fill the HTTP/2 window and the 4-message buffer while the client reads nothing.
        const big = new Uint8Array(256 * 1024);
        const acknowledged: bigint[] = [];
        for (let i = 0; i < 40; i++)
          acknowledged.push((await skv.put({ key: `${p}${i}`, value: big })).header!.revision);
        const received: bigint[] = [];
        let error: unknown;
        for (;;) {
          try {
            const m = await reader.next(5000);
            if (m.events.length > 0) received.push(m.header!.revision);
          } catch (e) {
            error = e;
            break;
          }
        }
        expect(error).toBeInstanceOf(ConnectError);
        const ce = error as ConnectError;
        expect(ce.code).toBe(Code.ResourceExhausted);
        const info = ce.findDetails(ErrorInfoSchema)[0]!;
        expect(info.reason).toBe("SLOW_CONSUMER");
        const resume = BigInt(info.metadata.resume_revision!);
        expect(resume).toBe(received.length > 0 ? received[received.length - 1]! + 1n : start + 1n);
        // Resuming from there delivers exactly the rest.
        const rest = open({ prefix: p, startRevision: resume }, sw);
        const messages = await rest.events(acknowledged.filter((r) => r >= resume).length, 10_000);
        expect([...received, ...messages.map((m) => m.header!.revision)]).toEqual(acknowledged);
      });
    });
  });
}
