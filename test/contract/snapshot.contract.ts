/**
 * The SnapshotService conformance suite: every RPC and error reason,
 * sequence races, single-use resume tokens under concurrency, purge,
 * large states (compression must be invisible), TTL expiry, List paging
 * under concurrent updates, tenants, and the changefeed events. It runs
 * through a real server and a real gRPC client against each backend
 * (snapshot-memory.test.ts, snapshot-redis.test.ts).
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { type Client, Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorInfoSchema } from "../../src/gen/google/rpc/error_details_pb.js";
import { KvService } from "../../src/gen/latchkey/v1/kv_pb.js";
import { LeaseService } from "../../src/gen/latchkey/v1/lease_pb.js";
import {
  ExecutionStatus,
  type SaveRequestSchema,
  SnapshotService,
} from "../../src/gen/latchkey/v1/snapshot_pb.js";
import { EventKind, WatchService } from "../../src/gen/latchkey/v1/watch_pb.js";
import { connectClients, type Protocol } from "../support/clients.js";
import { expectError } from "../support/errors.js";
import type { TestServer } from "../support/test-server.js";
import { WatchReader } from "../support/watch-reader.js";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array | undefined) => new TextDecoder().decode(b);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const duration = (ms: number) => ({
  seconds: BigInt(Math.floor(ms / 1000)),
  nanos: (ms % 1000) * 1_000_000,
});
const timestamp = (ms: number) => ({
  seconds: BigInt(Math.floor(ms / 1000)),
  nanos: (ms % 1000) * 1_000_000,
});
const ms = (t: { seconds: bigint; nanos: number } | undefined) =>
  t === undefined ? undefined : Number(t.seconds) * 1000 + Math.floor(t.nanos / 1e6);

/** The optional fields of a Save the tests set. */
type SaveFields = Pick<
  MessageInitShape<typeof SaveRequestSchema>,
  "state" | "contentType" | "status" | "metadata" | "ttl" | "eventSeq"
>;

/** A realistic JSON workflow state of about `bytes` bytes. */
export function jsonState(bytes: number): Uint8Array {
  const history: unknown[] = [];
  let size = 0;
  for (let i = 0; size < bytes; i++) {
    const step = {
      seq: i,
      at: new Date(1.7e12 + i * 1375).toISOString(),
      step: ["charge", "reserve", "ship", "notify"][i % 4],
      status: i % 9 === 0 ? "failed" : "completed",
      output: { id: randomBytes(8).toString("hex"), count: i % 97 },
    };
    size += JSON.stringify(step).length + 1;
    history.push(step);
  }
  return enc(JSON.stringify({ workflow: "order", history }));
}

export interface SnapshotContractOptions {
  /** Starts a server with extra LATCHKEY_* settings. */
  readonly start: (env?: Record<string, string>) => Promise<TestServer>;
  readonly protocol?: Protocol;
  /**
   * Run the tests that move 16 MiB or more in one call (default true). JSON
   * over HTTP/1.1 spends tens of seconds base64-coding them and proves
   * nothing more than gRPC does.
   */
  readonly heavy?: boolean;
  /**
   * Backend keys (and index members) still mentioning the execution after a
   * purge; the Redis suite scans its key prefix. Undefined = checked through
   * the API only.
   */
  readonly leftovers?: (server: TestServer, executionId: string) => Promise<string[]>;
  /** Bytes the backend holds for the execution's state (to see compression), if it can tell. */
  readonly storedStateBytes?: (server: TestServer, executionId: string) => Promise<number>;
}

export function describeSnapshotContract(name: string, options: SnapshotContractOptions): void {
  describe(`SnapshotService conformance: ${name}`, () => {
    let server: TestServer;
    let clients: ReturnType<typeof connectClients>;
    let snap: Client<typeof SnapshotService>;
    let kv: Client<typeof KvService>;
    let watch: Client<typeof WatchService>;
    const readers: WatchReader[] = [];

    beforeAll(async () => {
      server = await options.start({
        LATCHKEY_SNAPSHOT_MAX_CHECKPOINTS: "4",
        LATCHKEY_SWEEP_INTERVAL_MS: "20",
      });
      clients = connectClients(server.baseUrl, options.protocol ?? "grpc");
      snap = clients.client(SnapshotService);
      kv = clients.client(KvService);
      watch = clients.client(WatchService);
    });
    afterAll(async () => {
      for (const r of readers) r.close();
      clients?.close();
      await server?.close();
    });

    const fresh = () => `ex-${randomBytes(5).toString("hex")}`;
    const revision = async () => (await kv.get({ key: "__probe" })).header!.revision;
    const save = (executionId: string, sequence: number, init: SaveFields = {}) =>
      snap.save({
        executionId,
        sequence: BigInt(sequence),
        state: enc(`{"n":${sequence}}`),
        contentType: "application/json",
        ...init,
      });
    /** A watch on `prefix`, established (its first progress message read). */
    const watching = async (prefix: string) => {
      const reader = new WatchReader((signal) => watch.watch({ prefix }, { signal }));
      readers.push(reader);
      const first = await reader.next();
      expect(first.events).toEqual([]);
      return reader;
    };

    describe("Save and Load", () => {
      it("saves, then loads the state with its metadata", async () => {
        const id = fresh();
        const before = await revision();
        const saved = await save(id, 1, {
          state: enc('{"step":"charge"}'),
          metadata: { owner: "billing", region: "eu" },
          eventSeq: 0n,
        });
        expect(saved.header!.revision).toBe(before + 1n);
        expect(saved.snapshot).toMatchObject({
          executionId: id,
          sequence: 1n,
          status: ExecutionStatus.RUNNING,
          contentType: "application/json",
          stateSize: 17n,
          metadata: { owner: "billing", region: "eu" },
        });
        expect(saved.snapshot!.state.length).toBe(0);
        expect(saved.snapshot!.createTime).toEqual(saved.snapshot!.updateTime);
        expect(saved.snapshot!.expireTime).toBeUndefined();
        const loaded = await snap.load({ executionId: id });
        expect(loaded.header!.revision).toBeGreaterThanOrEqual(saved.header!.revision);
        expect(dec(loaded.snapshot!.state)).toBe('{"step":"charge"}');
        expect(loaded.snapshot).toMatchObject({
          sequence: 1n,
          status: ExecutionStatus.RUNNING,
          metadata: { owner: "billing", region: "eu" },
        });
      });

      it("needs a sequence above the stored one: equal or lower is ABORTED SEQUENCE_STALE", async () => {
        const id = fresh();
        await save(id, 5);
        for (const stale of [5, 4, 1]) {
          const meta = await expectError(save(id, stale), Code.Aborted, "SEQUENCE_STALE");
          expect(meta.current_sequence).toBe("5");
        }
        const before = await revision();
        const ok = await save(id, 9, { status: ExecutionStatus.COMPLETED });
        expect(ok.header!.revision).toBe(before + 1n);
        expect(ok.snapshot).toMatchObject({ sequence: 9n, status: ExecutionStatus.COMPLETED });
        expect(ms(ok.snapshot!.createTime)).toBeLessThanOrEqual(ms(ok.snapshot!.updateTime)!);
        await expectError(save(fresh(), 0), Code.InvalidArgument, "INVALID_ARGUMENT");
        await expectError(save(fresh(), -3), Code.InvalidArgument, "INVALID_ARGUMENT");
      });

      it("keeps the stored status when the status is unspecified", async () => {
        const id = fresh();
        await save(id, 1, { status: ExecutionStatus.PENDING });
        expect((await save(id, 2)).snapshot!.status).toBe(ExecutionStatus.PENDING);
        expect((await save(id, 3, { status: ExecutionStatus.FAILED })).snapshot!.status).toBe(
          ExecutionStatus.FAILED,
        );
      });

      it("Load of an unknown execution is NOT_FOUND", async () => {
        const meta = await expectError(
          snap.load({ executionId: fresh() }),
          Code.NotFound,
          "NOT_FOUND",
        );
        expect(meta.execution_id).toBeDefined();
      });

      it("refuses bad ids, oversized state and metadata, bad TTLs and unknown statuses", async () => {
        await expectError(save("", 1), Code.InvalidArgument, "INVALID_KEY");
        await expectError(save("a/b", 1), Code.InvalidArgument, "INVALID_KEY");
        await expectError(save("a\u0000b", 1), Code.InvalidArgument, "INVALID_KEY");
        await expectError(save("x".repeat(257), 1), Code.InvalidArgument, "INVALID_KEY");
        await save("é".repeat(128), 1); // 256 bytes: allowed
        await expectError(snap.load({ executionId: "" }), Code.InvalidArgument, "INVALID_KEY");
        await expectError(
          save(fresh(), 1, { state: new Uint8Array(16 * 1024 * 1024 + 1) }),
          Code.InvalidArgument,
          "TOO_LARGE",
        );
        await expectError(
          save(fresh(), 1, {
            metadata: Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, "v"])),
          }),
          Code.InvalidArgument,
          "TOO_LARGE",
        );
        await expectError(
          save(fresh(), 1, { metadata: { big: "x".repeat(4096) } }),
          Code.InvalidArgument,
          "TOO_LARGE",
        );
        await expectError(
          save(fresh(), 1, { metadata: { "": "v" } }),
          Code.InvalidArgument,
          "INVALID_ARGUMENT",
        );
        await expectError(
          save(fresh(), 1, { ttl: duration(5) }),
          Code.InvalidArgument,
          "INVALID_TTL",
        );
        await expectError(
          save(fresh(), 1, { status: 99 as ExecutionStatus }),
          Code.InvalidArgument,
          "INVALID_ARGUMENT",
        );
        await expectError(
          snap.list({ status: [42 as ExecutionStatus] }),
          Code.InvalidArgument,
          "INVALID_ARGUMENT",
        );
      });

      const sizes: [string, number][] = [
        ["1 KiB", 1024],
        ["64 KiB", 64 * 1024],
        ["1 MiB", 1024 * 1024],
      ];
      if (options.heavy ?? true) sizes.push(["16 MiB", 16 * 1024 * 1024]);
      it.each(sizes)("round-trips a %s state byte for byte, JSON and random", async (_, size) => {
        for (const state of [jsonState(size).slice(0, size), randomBytes(size)]) {
          const id = fresh();
          const saved = await save(id, 1, { state });
          expect(saved.snapshot!.stateSize).toBe(BigInt(size));
          const loaded = await snap.load({ executionId: id });
          expect(loaded.snapshot!.stateSize).toBe(BigInt(size));
          expect(Buffer.compare(loaded.snapshot!.state, state)).toBe(0);
        }
      });

      it("stores large JSON states compressed, invisibly", async () => {
        const id = fresh();
        const state = jsonState(512 * 1024);
        await save(id, 1, { state });
        const loaded = await snap.load({ executionId: id });
        expect(Buffer.compare(loaded.snapshot!.state, state)).toBe(0);
        if (options.storedStateBytes) {
          const stored = await options.storedStateBytes(server, id);
          expect(stored).toBeLessThan(state.length / 2);
          // Below the threshold (16 KiB) the state is kept as sent.
          const small = fresh();
          await save(small, 1, { state: jsonState(8 * 1024) });
          expect(await options.storedStateBytes(server, small)).toBeGreaterThanOrEqual(8 * 1024);
        }
      });

      it("expires a snapshot at its TTL with SNAPSHOT_DELETED, and Load stops finding it", async () => {
        const id = fresh();
        const reader = await watching(`/snapshots/${id}`);
        const saved = await save(id, 1, { ttl: duration(150) });
        expect(ms(saved.snapshot!.expireTime)).toBeGreaterThan(ms(saved.snapshot!.updateTime)!);
        const m1 = await reader.nextEvents();
        expect(m1.events[0]!.kind).toBe(EventKind.SNAPSHOT_SAVED);
        const m2 = await reader.nextEvents(3000);
        expect(m2.events).toHaveLength(1);
        expect(m2.events[0]!.kind).toBe(EventKind.SNAPSHOT_DELETED);
        expect(m2.events[0]!.kv!.key).toBe(`/snapshots/${id}`);
        expect(m2.events[0]!.snapshot).toMatchObject({ executionId: id, sequence: 1n });
        expect(m2.header!.revision).toBeGreaterThan(saved.header!.revision);
        await expectError(snap.load({ executionId: id }), Code.NotFound, "NOT_FOUND");
        // A new save starts a new execution.
        expect((await save(id, 1)).snapshot!.sequence).toBe(1n);
      });

      it("a save without a TTL clears an earlier one", async () => {
        const id = fresh();
        await save(id, 1, { ttl: duration(100) });
        const again = await save(id, 2);
        expect(again.snapshot!.expireTime).toBeUndefined();
        await sleep(250);
        expect((await snap.load({ executionId: id })).snapshot!.sequence).toBe(2n);
      });

      it("racing saves: exactly the highest wins, every acknowledged one is in the feed once, in order", async () => {
        const id = fresh();
        const reader = await watching(`/snapshots/${id}`);
        const sequences = Array.from({ length: 60 }, (_, i) => i + 1).sort(
          () => Math.random() - 0.5,
        );
        const results = await Promise.allSettled(sequences.map((s) => save(id, s)));
        const acked: number[] = [];
        for (const [i, r] of results.entries()) {
          if (r.status === "fulfilled") acked.push(sequences[i]!);
          else {
            const error = ConnectError.from(r.reason);
            expect(error.code).toBe(Code.Aborted);
            expect(error.findDetails(ErrorInfoSchema)[0]!.reason).toBe("SEQUENCE_STALE");
          }
        }
        expect(acked).toContain(60);
        const loaded = await snap.load({ executionId: id });
        expect(loaded.snapshot!.sequence).toBe(60n);
        expect(dec(loaded.snapshot!.state)).toBe('{"n":60}');
        const messages = await reader.events(acked.length, 10_000);
        const fed = messages.flatMap((m) => m.events.map((e) => Number(e.snapshot!.sequence)));
        expect(fed).toEqual([...acked].sort((a, b) => a - b));
        await reader.quiet(100);
      });
    });

    describe("Patch", () => {
      it("merges (RFC 7396), bumps the sequence by one and keeps everything else", async () => {
        const id = fresh();
        await save(id, 7, {
          state: enc('{"a":1,"big":12345678901234567890,"nested":{"x":1,"y":2},"gone":true}'),
          status: ExecutionStatus.SUSPENDED,
          metadata: { m: "1" },
        });
        const before = await revision();
        const patched = await snap.patch({
          executionId: id,
          mergePatch: '{"a":2,"nested":{"y":null,"z":[1]},"gone":null}',
        });
        expect(patched.header!.revision).toBe(before + 1n);
        expect(patched.snapshot).toMatchObject({
          sequence: 8n,
          status: ExecutionStatus.SUSPENDED,
          metadata: { m: "1" },
        });
        const loaded = await snap.load({ executionId: id });
        expect(dec(loaded.snapshot!.state)).toBe(
          '{"a":2,"big":12345678901234567890,"nested":{"x":1,"z":[1]}}',
        );
        expect(loaded.snapshot!.stateSize).toBe(BigInt(loaded.snapshot!.state.length));
      });

      it("checks expected_sequence when set: a mismatch is ABORTED SEQUENCE_STALE", async () => {
        const id = fresh();
        await save(id, 3, { state: enc("{}") });
        const meta = await expectError(
          snap.patch({ executionId: id, mergePatch: '{"a":1}', expectedSequence: 2n }),
          Code.Aborted,
          "SEQUENCE_STALE",
        );
        expect(meta.current_sequence).toBe("3");
        const ok = await snap.patch({
          executionId: id,
          mergePatch: '{"a":1}',
          expectedSequence: 3n,
        });
        expect(ok.snapshot!.sequence).toBe(4n);
      });

      it("NOT_JSON for a non-JSON state, INVALID_ARGUMENT for a non-JSON patch, NOT_FOUND without a snapshot", async () => {
        const id = fresh();
        await save(id, 1, { state: new Uint8Array([0xff, 0x00, 0x01]), contentType: "" });
        await expectError(
          snap.patch({ executionId: id, mergePatch: "{}" }),
          Code.FailedPrecondition,
          "NOT_JSON",
        );
        await save(id, 2, { state: enc("not json") });
        await expectError(
          snap.patch({ executionId: id, mergePatch: "{}" }),
          Code.FailedPrecondition,
          "NOT_JSON",
        );
        await save(id, 3, { state: enc("{}") });
        await expectError(
          snap.patch({ executionId: id, mergePatch: "{a:1}" }),
          Code.InvalidArgument,
          "INVALID_ARGUMENT",
        );
        await expectError(
          snap.patch({ executionId: id, mergePatch: "" }),
          Code.InvalidArgument,
          "INVALID_ARGUMENT",
        );
        await expectError(
          snap.patch({ executionId: fresh(), mergePatch: "{}" }),
          Code.NotFound,
          "NOT_FOUND",
        );
        expect((await snap.load({ executionId: id })).snapshot!.sequence).toBe(3n);
      });

      it("patches a large (compressed) state", async () => {
        const id = fresh();
        const state = jsonState(2 * 1024 * 1024);
        await save(id, 1, { state });
        await snap.patch({ executionId: id, mergePatch: '{"workflow":"refund","extra":{"k":1}}' });
        const loaded = await snap.load({ executionId: id });
        const doc = JSON.parse(dec(loaded.snapshot!.state));
        const original = JSON.parse(dec(state));
        expect(doc.workflow).toBe("refund");
        expect(doc.extra).toEqual({ k: 1 });
        expect(doc.history).toEqual(original.history);
      });

      it("concurrent patches lose no update", async () => {
        const id = fresh();
        await save(id, 10, { state: enc("{}") });
        await Promise.all(
          Array.from({ length: 12 }, (_, i) =>
            snap.patch({ executionId: id, mergePatch: `{"k${i}":${i}}` }),
          ),
        );
        const loaded = await snap.load({ executionId: id });
        expect(loaded.snapshot!.sequence).toBe(22n);
        const doc = JSON.parse(dec(loaded.snapshot!.state));
        expect(Object.keys(doc).sort()).toEqual(
          Array.from({ length: 12 }, (_, i) => `k${i}`).sort(),
        );
      });

      it.runIf(options.heavy ?? true)(
        "refuses a patch that would make the state too large",
        async () => {
          const id = fresh();
          await save(id, 1, { state: enc(`{"a":"${"x".repeat(16 * 1024 * 1024 - 100)}"}`) });
          await expectError(
            snap.patch({ executionId: id, mergePatch: `{"b":"${"y".repeat(200)}"}` }),
            Code.InvalidArgument,
            "TOO_LARGE",
          );
        },
      );
    });

    describe("Delete", () => {
      it("is idempotent and advances the revision only when something goes", async () => {
        const id = fresh();
        await save(id, 1);
        const before = await revision();
        const first = await snap.delete({ executionId: id });
        expect(first.deleted).toBe(true);
        expect(first.header!.revision).toBe(before + 1n);
        const second = await snap.delete({ executionId: id });
        expect(second.deleted).toBe(false);
        expect(second.header!.revision).toBe(first.header!.revision);
        await expectError(snap.load({ executionId: id }), Code.NotFound, "NOT_FOUND");
      });

      it("without purge keeps checkpoints and the event log", async () => {
        const id = fresh();
        await save(id, 1);
        await snap.checkpoint({ executionId: id, name: "c1" });
        await snap.appendEvents({ executionId: id, events: [{ type: "t", data: enc("1") }] });
        await snap.delete({ executionId: id });
        expect((await snap.listCheckpoints({ executionId: id })).checkpoints).toHaveLength(1);
        expect((await snap.readEvents({ executionId: id })).lastSeq).toBe(1n);
        // And a checkpoint can bring the execution back.
        const restored = await snap.restore({ executionId: id, name: "c1" });
        expect(restored.snapshot!.sequence).toBe(2n);
      });

      it("purge removes everything of the execution in one revision, and nothing else", async () => {
        const id = fresh();
        const other = fresh();
        await save(id, 1);
        await save(other, 1);
        await snap.checkpoint({ executionId: id, name: "c1" });
        await snap.checkpoint({ executionId: id, name: "c2" });
        await snap.appendEvents({
          executionId: id,
          events: [{ type: "t", data: enc("1") }],
          idempotencyKey: "once",
        });
        const { resumeToken } = await snap.suspend({ executionId: id, reason: "wait" });
        await kv.put({ key: `executions/${id}/a`, value: enc("1") });
        await kv.put({ key: `executions/${id}/b/c`, value: enc("2") });
        await kv.put({ key: `executions/${id}/t`, value: enc("3"), ttl: duration(10_000) });
        const lease = await clients.client(LeaseService).grant({ ttl: duration(60_000) });
        await kv.put({ key: `executions/${id}/l`, value: enc("6"), leaseId: lease.leaseId });
        await kv.put({ key: `executions/${id}x/keep`, value: enc("4") });
        await kv.put({ key: `executions/${other}/keep`, value: enc("5") });

        // The checker sees the execution before the purge (so its empty answer after means something).
        if (options.leftovers)
          expect((await options.leftovers(server, id)).length).toBeGreaterThan(5);
        const reader = await watching("");
        const purged = await snap.delete({ executionId: id, purge: true });
        expect(purged.deleted).toBe(true);
        const m = await reader.nextEvents();
        expect(m.header!.revision).toBe(purged.header!.revision);
        expect(
          m.events
            .map((e) => [EventKind[e.kind], e.kv!.key])
            .sort((a, b) => (a[1]! < b[1]! ? -1 : 1)),
        ).toEqual(
          [
            ["SNAPSHOT_DELETED", `/snapshots/${id}`],
            ["DELETE", `executions/${id}/a`],
            ["DELETE", `executions/${id}/b/c`],
            ["DELETE", `executions/${id}/l`],
            ["DELETE", `executions/${id}/t`],
          ].sort((a, b) => (a[1]! < b[1]! ? -1 : 1)),
        );
        await reader.quiet(100);

        await expectError(snap.load({ executionId: id }), Code.NotFound, "NOT_FOUND");
        expect((await snap.listCheckpoints({ executionId: id })).checkpoints).toEqual([]);
        const events = await snap.readEvents({ executionId: id });
        expect(events.events).toEqual([]);
        expect(events.lastSeq).toBe(0n);
        await expectError(
          snap.resume({ resumeToken, input: enc("x") }),
          Code.FailedPrecondition,
          "INVALID_TOKEN",
        );
        expect((await kv.range({ prefix: `executions/${id}/` })).kvs).toEqual([]);
        // The lease no longer lists the purged key.
        const ttl = await clients
          .client(LeaseService)
          .timeToLive({ leaseId: lease.leaseId, withKeys: true });
        expect(ttl.keys).toEqual([]);
        expect((await kv.get({ key: `executions/${id}x/keep` })).kv).toBeDefined();
        expect((await kv.get({ key: `executions/${other}/keep` })).kv).toBeDefined();
        expect((await snap.load({ executionId: other })).snapshot).toBeDefined();
        // The idempotency key went too: the same append applies anew.
        const again = await snap.appendEvents({
          executionId: id,
          events: [{ type: "t", data: enc("1") }],
          idempotencyKey: "once",
        });
        expect(again.firstSeq).toBe(1n);
        await snap.delete({ executionId: id, purge: true });
        if (options.leftovers) expect(await options.leftovers(server, id)).toEqual([]);
      });

      it("purge of an execution without a snapshot still removes its log and keys", async () => {
        const id = fresh();
        await snap.appendEvents({ executionId: id, events: [{ type: "t", data: enc("1") }] });
        await kv.put({ key: `executions/${id}/a`, value: enc("1") });
        const before = await revision();
        const out = await snap.delete({ executionId: id, purge: true });
        expect(out.deleted).toBe(false);
        expect(out.header!.revision).toBe(before + 1n);
        expect((await snap.readEvents({ executionId: id })).lastSeq).toBe(0n);
        expect((await kv.get({ key: `executions/${id}/a` })).kv).toBeUndefined();
        if (options.leftovers) expect(await options.leftovers(server, id)).toEqual([]);
      });
    });

    describe("List", () => {
      /** Removes every snapshot of the tenant, so List sees only this test's. */
      const clearAll = async () => {
        for (;;) {
          const page = await snap.list({ pageSize: 1000 });
          if (page.snapshots.length === 0) return;
          await Promise.all(page.snapshots.map((s) => snap.delete({ executionId: s.executionId })));
        }
      };

      it("lists metadata newest update first, filtered by status and update time", async () => {
        await clearAll();
        const ids = [fresh(), fresh(), fresh(), fresh()];
        const times: number[] = [];
        for (const [i, id] of ids.entries()) {
          const s = await save(id, 1, {
            status: i % 2 === 0 ? ExecutionStatus.RUNNING : ExecutionStatus.COMPLETED,
          });
          times.push(ms(s.snapshot!.updateTime)!);
          await sleep(5);
        }
        const all = await snap.list({});
        expect(all.snapshots.map((s) => s.executionId)).toEqual([...ids].reverse());
        expect(all.snapshots[0]!.state.length).toBe(0);
        expect(all.nextPageToken).toBe("");
        const running = await snap.list({ status: [ExecutionStatus.RUNNING] });
        expect(running.snapshots.map((s) => s.executionId)).toEqual([ids[2], ids[0]]);
        const both = await snap.list({
          status: [ExecutionStatus.COMPLETED, ExecutionStatus.RUNNING],
        });
        expect(both.snapshots.map((s) => s.executionId)).toEqual([...ids].reverse());
        const window = await snap.list({
          updatedAfter: timestamp(times[1]!),
          updatedBefore: timestamp(times[3]!),
        });
        expect(window.snapshots.map((s) => s.executionId)).toEqual([ids[2], ids[1]]);
        expect((await snap.list({ status: [ExecutionStatus.CANCELLED] })).snapshots).toEqual([]);
      });

      it("pages with tokens bound to the query, and refuses bad page sizes and tokens", async () => {
        await clearAll();
        const ids: string[] = [];
        for (let i = 0; i < 7; i++) {
          ids.push(fresh());
          await save(ids[i]!, 1);
        }
        const seen: string[] = [];
        let token = "";
        let pages = 0;
        do {
          const page = await snap.list({ pageSize: 3, pageToken: token });
          expect(page.snapshots.length).toBeLessThanOrEqual(3);
          seen.push(...page.snapshots.map((s) => s.executionId));
          token = page.nextPageToken;
          pages++;
        } while (token !== "");
        expect(pages).toBe(3);
        // Newest first; saves in one millisecond tie and then sort by id.
        const all = (await snap.list({ pageSize: 100 })).snapshots;
        expect(all.map((s) => s.executionId).sort()).toEqual([...ids].sort());
        for (let i = 1; i < all.length; i++) {
          const newer = ms(all[i - 1]!.updateTime)!;
          const older = ms(all[i]!.updateTime)!;
          const ordered =
            newer > older || (newer === older && all[i - 1]!.executionId < all[i]!.executionId);
          expect(ordered, `${all[i - 1]!.executionId} before ${all[i]!.executionId}`).toBe(true);
        }
        expect(seen).toEqual(all.map((s) => s.executionId));
        const first = await snap.list({ pageSize: 2 });
        await expectError(
          snap.list({
            pageSize: 2,
            pageToken: first.nextPageToken,
            status: [ExecutionStatus.FAILED],
          }),
          Code.InvalidArgument,
          "INVALID_PAGE_TOKEN",
        );
        await expectError(
          snap.list({ pageToken: "garbage" }),
          Code.InvalidArgument,
          "INVALID_PAGE_TOKEN",
        );
        await expectError(snap.list({ pageSize: 1001 }), Code.InvalidArgument, "TOO_LARGE");
        await expectError(snap.list({ pageSize: -1 }), Code.InvalidArgument, "INVALID_ARGUMENT");
        expect((await snap.list({ pageSize: 0 })).snapshots).toHaveLength(7);
      });

      it("stays stable under concurrent updates: no snapshot twice, the untouched exactly once", async () => {
        await clearAll();
        const ids = Array.from({ length: 60 }, () => fresh());
        const sequences = new Map<string, number>();
        for (const id of ids) {
          await save(id, 1);
          sequences.set(id, 1);
        }
        const touched = new Set<string>();
        let writing = true;
        const writer = (async () => {
          let n = 0;
          while (writing) {
            const id = n % 5 === 0 ? fresh() : ids[Math.floor(Math.random() * ids.length)]!;
            const next = (sequences.get(id) ?? 0) + 1;
            sequences.set(id, next);
            touched.add(id);
            await save(id, next);
            n++;
          }
        })();
        const seen: string[] = [];
        let token = "";
        do {
          const page = await snap.list({ pageSize: 4, pageToken: token });
          seen.push(...page.snapshots.map((s) => s.executionId));
          token = page.nextPageToken;
          await sleep(2);
        } while (token !== "");
        writing = false;
        await writer;
        expect(touched.size).toBeGreaterThan(5);
        expect(new Set(seen).size).toBe(seen.length);
        for (const id of ids) if (!touched.has(id)) expect(seen).toContain(id);
      });
    });

    describe("Checkpoints", () => {
      it("copies the snapshot, lists in name order, restores with a new higher sequence", async () => {
        const id = fresh();
        await save(id, 3, {
          state: enc('{"v":3}'),
          status: ExecutionStatus.RUNNING,
          eventSeq: 2n,
          metadata: { a: "1" },
        });
        const before = await revision();
        const cp = await snap.checkpoint({ executionId: id, name: "b-before-charge" });
        expect(cp.header!.revision).toBe(before + 1n);
        expect(cp.checkpoint).toMatchObject({
          name: "b-before-charge",
          sequence: 3n,
          status: ExecutionStatus.RUNNING,
          eventSeq: 2n,
          stateSize: 7n,
        });
        expect(cp.checkpoint!.createTime).toBeDefined();
        await snap.checkpoint({ executionId: id, name: "a/first" });
        await save(id, 10, {
          state: enc('{"v":10}'),
          status: ExecutionStatus.FAILED,
          eventSeq: 9n,
        });
        const list = await snap.listCheckpoints({ executionId: id });
        expect(list.checkpoints.map((c) => c.name)).toEqual(["a/first", "b-before-charge"]);

        const reader = await watching(`/snapshots/${id}`);
        const restored = await snap.restore({ executionId: id, name: "b-before-charge" });
        expect(restored.snapshot).toMatchObject({
          sequence: 11n,
          status: ExecutionStatus.RUNNING,
          eventSeq: 2n,
          metadata: { a: "1" },
        });
        expect(dec(restored.snapshot!.state)).toBe('{"v":3}');
        const m = await reader.nextEvents();
        expect(m.header!.revision).toBe(restored.header!.revision);
        expect(m.events[0]!.kind).toBe(EventKind.SNAPSHOT_SAVED);
        expect(m.events[0]!.snapshot!.sequence).toBe(11n);
        const loaded = await snap.load({ executionId: id });
        expect(dec(loaded.snapshot!.state)).toBe('{"v":3}');
        expect(loaded.snapshot!.sequence).toBe(11n);
        // Saves continue above the restored sequence.
        await expectError(save(id, 11), Code.Aborted, "SEQUENCE_STALE");
        await save(id, 12);
      });

      it("overwrites a checkpoint of the same name; caps distinct names with QUOTA", async () => {
        const id = fresh();
        await save(id, 1);
        for (const name of ["c1", "c2", "c3", "c4"]) {
          await snap.checkpoint({ executionId: id, name });
        }
        await save(id, 2);
        const again = await snap.checkpoint({ executionId: id, name: "c2" });
        expect(again.checkpoint!.sequence).toBe(2n);
        const meta = await expectError(
          snap.checkpoint({ executionId: id, name: "c5" }),
          Code.ResourceExhausted,
          "QUOTA",
        );
        expect(meta.limit).toBe("4");
        expect((await snap.listCheckpoints({ executionId: id })).checkpoints).toHaveLength(4);
      });

      it("NOT_FOUND reasons: no snapshot to copy, no such checkpoint; bad names", async () => {
        const id = fresh();
        await expectError(
          snap.checkpoint({ executionId: id, name: "c" }),
          Code.NotFound,
          "NOT_FOUND",
        );
        await save(id, 1);
        const meta = await expectError(
          snap.restore({ executionId: id, name: "nope" }),
          Code.NotFound,
          "CHECKPOINT_NOT_FOUND",
        );
        expect(meta).toMatchObject({ execution_id: id, name: "nope" });
        await expectError(
          snap.checkpoint({ executionId: id, name: "" }),
          Code.InvalidArgument,
          "INVALID_KEY",
        );
        await expectError(
          snap.checkpoint({ executionId: id, name: "x".repeat(257) }),
          Code.InvalidArgument,
          "INVALID_KEY",
        );
        await expectError(
          snap.listCheckpoints({ executionId: "" }),
          Code.InvalidArgument,
          "INVALID_KEY",
        );
        expect((await snap.listCheckpoints({ executionId: fresh() })).checkpoints).toEqual([]);
      });
    });

    describe("Suspend and Resume", () => {
      it("suspends with a single-use token; Resume sets RUNNING, keeps the input, returns the state", async () => {
        const id = fresh();
        await save(id, 4, { state: enc('{"waiting":true}') });
        const reader = await watching(`/snapshots/${id}`);
        const before = await revision();
        const suspended = await snap.suspend({
          executionId: id,
          reason: "approval",
          data: enc("ask bob"),
        });
        expect(suspended.header!.revision).toBe(before + 1n);
        expect(suspended.resumeToken).toMatch(/^lkrt_[A-Za-z0-9_-]{43}$/);
        expect(suspended.snapshot).toMatchObject({
          sequence: 4n,
          status: ExecutionStatus.SUSPENDED,
          suspension: { reason: "approval" },
        });
        const s = suspended.snapshot!.suspension!;
        expect(dec(s.data)).toBe("ask bob");
        // The default token lifetime is 30 days.
        const lifetime = ms(s.expireTime)! - ms(s.suspendTime)!;
        expect(Math.abs(lifetime - 30 * 24 * 3600 * 1000)).toBeLessThan(60_000);
        const m1 = await reader.nextEvents();
        expect(m1.events[0]!.kind).toBe(EventKind.EXECUTION_SUSPENDED);
        expect(m1.events[0]!.snapshot!.suspension!.reason).toBe("approval");

        const loaded = await snap.load({ executionId: id });
        expect(loaded.snapshot!.status).toBe(ExecutionStatus.SUSPENDED);

        const resumed = await snap.resume({
          resumeToken: suspended.resumeToken,
          input: enc('{"approved":true}'),
        });
        expect(resumed.snapshot).toMatchObject({
          executionId: id,
          sequence: 4n,
          status: ExecutionStatus.RUNNING,
        });
        expect(resumed.snapshot!.suspension).toBeUndefined();
        expect(dec(resumed.snapshot!.state)).toBe('{"waiting":true}');
        expect(dec(resumed.snapshot!.input)).toBe('{"approved":true}');
        const m2 = await reader.nextEvents();
        expect(m2.header!.revision).toBe(resumed.header!.revision);
        expect(m2.events[0]!.kind).toBe(EventKind.EXECUTION_RESUMED);
        expect(dec((await snap.load({ executionId: id })).snapshot!.input)).toBe(
          '{"approved":true}',
        );

        const before2 = await revision();
        await expectError(
          snap.resume({ resumeToken: suspended.resumeToken, input: enc("again") }),
          Code.FailedPrecondition,
          "INVALID_TOKEN",
        );
        expect(await revision()).toBe(before2);
      });

      it("unknown, malformed and expired tokens are INVALID_TOKEN; an empty one is INVALID_ARGUMENT", async () => {
        const id = fresh();
        await save(id, 1);
        for (const token of [`lkrt_${"A".repeat(43)}`, "hello", "lkrt_short"]) {
          await expectError(
            snap.resume({ resumeToken: token }),
            Code.FailedPrecondition,
            "INVALID_TOKEN",
          );
        }
        await expectError(
          snap.resume({ resumeToken: "" }),
          Code.InvalidArgument,
          "INVALID_ARGUMENT",
        );
        const short = await snap.suspend({
          executionId: id,
          expireTime: timestamp(Date.now() + 150),
        });
        expect(ms(short.snapshot!.suspension!.expireTime)).toBeGreaterThan(Date.now() - 1000);
        await sleep(300);
        await expectError(
          snap.resume({ resumeToken: short.resumeToken }),
          Code.FailedPrecondition,
          "INVALID_TOKEN",
        );
        expect((await snap.load({ executionId: id })).snapshot!.status).toBe(
          ExecutionStatus.SUSPENDED,
        );
        await expectError(
          snap.suspend({ executionId: id, expireTime: timestamp(Date.now() - 1000) }),
          Code.InvalidArgument,
          "INVALID_TTL",
        );
        await expectError(snap.suspend({ executionId: fresh() }), Code.NotFound, "NOT_FOUND");
      });

      it("a new Suspend invalidates the earlier token; a save that leaves SUSPENDED invalidates it too", async () => {
        const id = fresh();
        await save(id, 1);
        const first = await snap.suspend({ executionId: id, reason: "one" });
        const second = await snap.suspend({ executionId: id, reason: "two" });
        expect(second.resumeToken).not.toBe(first.resumeToken);
        await expectError(
          snap.resume({ resumeToken: first.resumeToken }),
          Code.FailedPrecondition,
          "INVALID_TOKEN",
        );
        // A save keeping SUSPENDED keeps the token ...
        await save(id, 2);
        expect((await snap.load({ executionId: id })).snapshot!.suspension!.reason).toBe("two");
        // ... one that moves away from SUSPENDED ends it.
        await save(id, 3, { status: ExecutionStatus.CANCELLED });
        expect((await snap.load({ executionId: id })).snapshot!.suspension).toBeUndefined();
        await expectError(
          snap.resume({ resumeToken: second.resumeToken }),
          Code.FailedPrecondition,
          "INVALID_TOKEN",
        );
      });

      it("of concurrent Resumes of one token exactly one wins", async () => {
        for (let round = 0; round < 3; round++) {
          const id = fresh();
          await save(id, 1);
          const { resumeToken } = await snap.suspend({ executionId: id });
          const results = await Promise.allSettled(
            Array.from({ length: 16 }, (_, i) =>
              snap.resume({ resumeToken, input: enc(`caller ${i}`) }),
            ),
          );
          const winners = results.flatMap((r, i) => (r.status === "fulfilled" ? [i] : []));
          expect(winners).toHaveLength(1);
          for (const r of results) {
            if (r.status === "rejected") {
              const info = ConnectError.from(r.reason).findDetails(ErrorInfoSchema)[0];
              expect(info?.reason).toBe("INVALID_TOKEN");
            }
          }
          expect(dec((await snap.load({ executionId: id })).snapshot!.input)).toBe(
            `caller ${winners[0]}`,
          );
        }
      });

      it("checks sizes of reason, data and input", async () => {
        const id = fresh();
        await save(id, 1);
        await expectError(
          snap.suspend({ executionId: id, reason: "r".repeat(1025) }),
          Code.InvalidArgument,
          "TOO_LARGE",
        );
        await expectError(
          snap.suspend({ executionId: id, data: new Uint8Array(1024 * 1024 + 1) }),
          Code.InvalidArgument,
          "TOO_LARGE",
        );
        const { resumeToken } = await snap.suspend({ executionId: id });
        await expectError(
          snap.resume({ resumeToken, input: new Uint8Array(1024 * 1024 + 1) }),
          Code.InvalidArgument,
          "TOO_LARGE",
        );
        await snap.resume({ resumeToken, input: new Uint8Array(1024 * 1024) });
      });
    });

    describe("Event log", () => {
      it("appends with server sequences and reads after a sequence, in order", async () => {
        const id = fresh();
        const before = await revision();
        const a = await snap.appendEvents({
          executionId: id,
          events: [
            { type: "started", data: enc("1") },
            { type: "charged", data: enc("2") },
          ],
        });
        expect([a.firstSeq, a.lastSeq]).toEqual([1n, 2n]);
        expect(a.header!.revision).toBe(before + 1n);
        const b = await snap.appendEvents({
          executionId: id,
          events: [{ type: "shipped", data: enc("3") }],
          expectedLastSeq: 2n,
        });
        expect([b.firstSeq, b.lastSeq]).toEqual([3n, 3n]);
        const all = await snap.readEvents({ executionId: id });
        expect(all.lastSeq).toBe(3n);
        expect(all.events.map((e) => [e.seq, e.type, dec(e.data)])).toEqual([
          [1n, "started", "1"],
          [2n, "charged", "2"],
          [3n, "shipped", "3"],
        ]);
        for (const e of all.events) expect(ms(e.time)).toBeGreaterThan(Date.now() - 60_000);
        const after = await snap.readEvents({ executionId: id, afterSeq: 1n, limit: 1 });
        expect(after.events.map((e) => e.seq)).toEqual([2n]);
        expect(after.lastSeq).toBe(3n);
        expect((await snap.readEvents({ executionId: id, afterSeq: 3n })).events).toEqual([]);
        expect((await snap.readEvents({ executionId: fresh() })).lastSeq).toBe(0n);
      });

      it("expected_last_seq mismatch is ABORTED SEQUENCE_STALE; racing appends: exactly one wins", async () => {
        const id = fresh();
        const meta = await expectError(
          snap.appendEvents({
            executionId: id,
            events: [{ type: "t" }],
            expectedLastSeq: 1n,
          }),
          Code.Aborted,
          "SEQUENCE_STALE",
        );
        expect(meta.current_last_seq).toBe("0");
        await snap.appendEvents({ executionId: id, events: [{ type: "t" }], expectedLastSeq: 0n });
        const results = await Promise.allSettled(
          Array.from({ length: 10 }, () =>
            snap.appendEvents({ executionId: id, events: [{ type: "t" }], expectedLastSeq: 1n }),
          ),
        );
        expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
        expect((await snap.readEvents({ executionId: id })).lastSeq).toBe(2n);
      });

      it("applies a retried append once and answers the same", async () => {
        const id = fresh();
        await snap.appendEvents({ executionId: id, events: [{ type: "a" }] });
        const request = {
          executionId: id,
          events: [
            { type: "b", data: enc("x") },
            { type: "c", data: enc("y") },
          ],
          expectedLastSeq: 1n,
          idempotencyKey: "req-42",
        };
        const first = await snap.appendEvents(request);
        const retried = await snap.appendEvents(request);
        expect([retried.firstSeq, retried.lastSeq]).toEqual([first.firstSeq, first.lastSeq]);
        expect([first.firstSeq, first.lastSeq]).toEqual([2n, 3n]);
        expect(retried.header!.revision).toBe(first.header!.revision);
        expect((await snap.readEvents({ executionId: id })).lastSeq).toBe(3n);
        await expectError(
          snap.appendEvents({ ...request, events: [{ type: "other" }] }),
          Code.InvalidArgument,
          "INVALID_ARGUMENT",
        );
        // The same key on another execution is another key.
        const elsewhere = await snap.appendEvents({
          ...request,
          executionId: fresh(),
          expectedLastSeq: 0n,
        });
        expect(elsewhere.firstSeq).toBe(1n);
      });

      it("refuses empty, typeless and oversized appends, and bad read limits", async () => {
        const id = fresh();
        await expectError(
          snap.appendEvents({ executionId: id, events: [] }),
          Code.InvalidArgument,
          "INVALID_ARGUMENT",
        );
        await expectError(
          snap.appendEvents({ executionId: id, events: [{ type: "" }] }),
          Code.InvalidArgument,
          "INVALID_ARGUMENT",
        );
        await expectError(
          snap.appendEvents({
            executionId: id,
            events: Array.from({ length: 1001 }, () => ({ type: "t" })),
          }),
          Code.InvalidArgument,
          "TOO_LARGE",
        );
        await expectError(
          snap.appendEvents({
            executionId: id,
            events: [{ type: "t", data: new Uint8Array(1024 * 1024 + 1) }],
          }),
          Code.InvalidArgument,
          "TOO_LARGE",
        );
        await expectError(
          snap.appendEvents({ executionId: "", events: [{ type: "t" }] }),
          Code.InvalidArgument,
          "INVALID_KEY",
        );
        await expectError(
          snap.readEvents({ executionId: id, limit: 10_001 }),
          Code.InvalidArgument,
          "TOO_LARGE",
        );
        await expectError(
          snap.readEvents({ executionId: id, afterSeq: -1n }),
          Code.InvalidArgument,
          "INVALID_ARGUMENT",
        );
      });

      it.runIf(options.heavy ?? true)(
        "keeps read answers within the state limit: large logs page by after_seq",
        async () => {
          const id = fresh();
          const mib = new Uint8Array(1024 * 1024);
          for (let i = 0; i < 3; i++) {
            await snap.appendEvents({
              executionId: id,
              events: Array.from({ length: 8 }, () => ({ type: "blob", data: mib })),
            });
          }
          const first = await snap.readEvents({ executionId: id });
          expect(first.events.length).toBe(16);
          expect(first.lastSeq).toBe(24n);
          const rest = await snap.readEvents({ executionId: id, afterSeq: 16n });
          expect(rest.events.map((e) => e.seq)).toEqual(
            Array.from({ length: 8 }, (_, i) => BigInt(17 + i)),
          );
        },
      );

      it("a snapshot records event_seq, so a loader replays only what follows", async () => {
        const id = fresh();
        await snap.appendEvents({
          executionId: id,
          events: ["a", "b", "c"].map((type) => ({ type })),
        });
        await save(id, 1, { eventSeq: 3n, state: enc('{"applied":3}') });
        await snap.appendEvents({ executionId: id, events: [{ type: "d" }, { type: "e" }] });
        const loaded = await snap.load({ executionId: id });
        const replay = await snap.readEvents({
          executionId: id,
          afterSeq: loaded.snapshot!.eventSeq,
        });
        expect(replay.events.map((e) => e.type)).toEqual(["d", "e"]);
      });
    });

    describe("Changefeed", () => {
      it("every mutation advances the revision by one; appends and checkpoints emit no event", async () => {
        const id = fresh();
        const reader = await watching("/snapshots/");
        const r1 = (await save(id, 1, { state: enc("{}") })).header!.revision;
        const r2 = (await snap.appendEvents({ executionId: id, events: [{ type: "t" }] })).header!
          .revision;
        const r3 = (await snap.checkpoint({ executionId: id, name: "c" })).header!.revision;
        const r4 = (await snap.patch({ executionId: id, mergePatch: '{"a":1}' })).header!.revision;
        const r5 = (await snap.delete({ executionId: id })).header!.revision;
        expect([r2 - r1, r3 - r2, r4 - r3, r5 - r4]).toEqual([1n, 1n, 1n, 1n]);
        const messages = await reader.events(3);
        expect(messages.map((m) => [m.header!.revision, EventKind[m.events[0]!.kind]])).toEqual([
          [r1, "SNAPSHOT_SAVED"],
          [r4, "SNAPSHOT_SAVED"],
          [r5, "SNAPSHOT_DELETED"],
        ]);
        const [saved, patched, deleted] = messages.map((m) => m.events[0]!);
        expect(saved!.kv).toMatchObject({ key: `/snapshots/${id}`, modRevision: r1 });
        expect(saved!.snapshot).toMatchObject({ executionId: id, sequence: 1n, stateSize: 2n });
        expect(saved!.snapshot!.state.length).toBe(0);
        expect(patched!.snapshot!.sequence).toBe(2n);
        expect(deleted!.snapshot!.sequence).toBe(2n);
        await reader.quiet(100);
      });

      it("a key watch follows one execution, a prefix watch every id it prefixes; resumable", async () => {
        const a = fresh();
        const b = `${a}b`;
        const exact = new WatchReader((signal) =>
          watch.watch({ key: `/snapshots/${a}` }, { signal }),
        );
        readers.push(exact);
        await exact.next();
        const prefixed = await watching(`/snapshots/${a}`);
        const first = await save(b, 1);
        await save(a, 1);
        await save(a, 2);
        const got = await exact.events(2);
        expect(got.flatMap((m) => m.events.map((e) => e.kv!.key))).toEqual([
          `/snapshots/${a}`,
          `/snapshots/${a}`,
        ]);
        await exact.quiet(100);
        const all = await prefixed.events(3);
        expect(all.flatMap((m) => m.events.map((e) => e.snapshot!.executionId))).toEqual([b, a, a]);
        const replay = new WatchReader((signal) =>
          watch.watch(
            { key: `/snapshots/${a}`, startRevision: first.header!.revision },
            { signal },
          ),
        );
        readers.push(replay);
        const replayed = await replay.events(2);
        expect(replayed.map((m) => m.events[0]!.snapshot!.sequence)).toEqual([1n, 2n]);
      });
    });

    describe("Tenants", () => {
      it("keeps executions and resume tokens apart", async () => {
        const dir = mkdtempSync(join(tmpdir(), "latchkey-snap-auth-"));
        const file = join(dir, "tokens.json");
        writeFileSync(
          file,
          JSON.stringify({
            tokens: [
              { token: "acme-snapshot-token-001", tenant: "acme", roles: ["read", "write"] },
              { token: "globex-snapshot-token-1", tenant: "globex", roles: ["read", "write"] },
            ],
          }),
        );
        const authed = await options.start({ LATCHKEY_AUTH_FILE: file });
        const acme = connectClients(authed.baseUrl, "grpc", {
          authorization: "Bearer acme-snapshot-token-001",
        });
        const globex = connectClients(authed.baseUrl, "grpc", {
          authorization: "Bearer globex-snapshot-token-1",
        });
        try {
          const a = acme.client(SnapshotService);
          const g = globex.client(SnapshotService);
          await a.save({ executionId: "shared-id", sequence: 5n, state: enc("acme") });
          await expectError(g.load({ executionId: "shared-id" }), Code.NotFound, "NOT_FOUND");
          await g.save({ executionId: "shared-id", sequence: 1n, state: enc("globex") });
          const { resumeToken } = await a.suspend({ executionId: "shared-id" });
          await expectError(g.resume({ resumeToken }), Code.FailedPrecondition, "INVALID_TOKEN");
          expect(dec((await a.resume({ resumeToken })).snapshot!.state)).toBe("acme");
          expect((await g.list({})).snapshots.map((s) => s.sequence)).toEqual([1n]);
        } finally {
          acme.close();
          globex.close();
          await authed.close();
        }
      });
    });
  });
}
