/**
 * The KV conformance suite: every RPC, precondition, error code and reason
 * of KvService, TTL expiry, paging under concurrent writes, Txn atomicity and
 * the Dapr state conformance cases that apply. It runs through a real server
 * and a real gRPC client against each backend (kv-memory.test.ts,
 * kv-redis.test.ts), so all backends answer exactly the same.
 */
import { randomBytes } from "node:crypto";
import { type Client, Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type Compare_Operator,
  KvService,
  Compare_Operator as Op,
} from "../../src/gen/latchkey/v1/kv_pb.js";
import { connectClients, type Protocol } from "../support/clients.js";
import { expectError } from "../support/errors.js";
import type { TestServer } from "../support/test-server.js";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array | undefined) => new TextDecoder().decode(b);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const ttl = (ms: number) => ({
  seconds: BigInt(Math.floor(ms / 1000)),
  nanos: (ms % 1000) * 1_000_000,
});

export interface KvContractOptions {
  /** Starts a fresh server for the suite. */
  readonly start: () => Promise<TestServer>;
  readonly protocol?: Protocol;
}

export function describeKvContract(name: string, options: KvContractOptions): void {
  describe(`KvService conformance: ${name}`, () => {
    let server: TestServer;
    let clients: ReturnType<typeof connectClients>;
    let kv: Client<typeof KvService>;
    let ns: string;

    beforeAll(async () => {
      server = await options.start();
      clients = connectClients(server.baseUrl, options.protocol ?? "grpc");
      kv = clients.client(KvService);
    });
    afterAll(async () => {
      clients?.close();
      await server?.close();
    });

    /** A fresh key namespace per test, so tests never see each other's keys. */
    const fresh = () => {
      ns = `t-${randomBytes(4).toString("hex")}/`;
      return ns;
    };
    const revision = async () => (await kv.get({ key: `${ns}__probe` })).header!.revision;

    describe("Get and Put", () => {
      it("a missing key is absent, not an error, and the header carries the revision", async () => {
        const p = fresh();
        const got = await kv.get({ key: `${p}missing` });
        expect(got.kv).toBeUndefined();
        expect(got.header?.revision).toBeGreaterThanOrEqual(0n);
      });

      it("put creates with version 1 and create = mod = the new revision", async () => {
        const p = fresh();
        const before = await revision();
        const put = await kv.put({ key: `${p}a`, value: enc("1") });
        expect(put.header!.revision).toBe(before + 1n);
        expect(put.kv).toMatchObject({
          key: `${p}a`,
          version: 1n,
          createRevision: before + 1n,
          modRevision: before + 1n,
          leaseId: 0n,
        });
        expect(put.kv!.expireTime).toBeUndefined();
        const got = await kv.get({ key: `${p}a` });
        expect(dec(got.kv!.value)).toBe("1");
        expect(got.kv!.modRevision).toBe(before + 1n);
        expect(got.header!.revision).toBe(before + 1n);
      });

      it("each put bumps version and mod_revision and keeps create_revision", async () => {
        const p = fresh();
        const first = await kv.put({ key: `${p}a`, value: enc("1") });
        const second = await kv.put({ key: `${p}a`, value: enc("2") });
        expect(second.kv!.version).toBe(2n);
        expect(second.kv!.createRevision).toBe(first.kv!.createRevision);
        expect(second.kv!.modRevision).toBe(first.kv!.modRevision + 1n);
      });

      it("a deleted key starts again at version 1 with a new create_revision", async () => {
        const p = fresh();
        const first = await kv.put({ key: `${p}a`, value: enc("1") });
        await kv.put({ key: `${p}a`, value: enc("2") });
        await kv.delete({ key: `${p}a` });
        const again = await kv.put({ key: `${p}a`, value: enc("3") });
        expect(again.kv!.version).toBe(1n);
        expect(again.kv!.createRevision).toBeGreaterThan(first.kv!.createRevision);
      });

      it("stores empty values as present keys (Dapr: empty values)", async () => {
        const p = fresh();
        await kv.put({ key: `${p}empty`, value: new Uint8Array() });
        const got = await kv.get({ key: `${p}empty` });
        expect(got.kv).toBeDefined();
        expect(got.kv!.value.length).toBe(0);
      });

      it("round-trips binary values byte-exact", async () => {
        const p = fresh();
        const value = new Uint8Array(256).map((_, i) => i);
        await kv.put({ key: `${p}bin`, value });
        expect((await kv.get({ key: `${p}bin` })).kv!.value).toEqual(value);
      });

      it("answers prev_kv on put only when asked", async () => {
        const p = fresh();
        const none = await kv.put({ key: `${p}a`, value: enc("1"), prevKv: true });
        expect(none.prevKv).toBeUndefined();
        const plain = await kv.put({ key: `${p}a`, value: enc("2") });
        expect(plain.prevKv).toBeUndefined();
        const withPrev = await kv.put({ key: `${p}a`, value: enc("3"), prevKv: true });
        expect(dec(withPrev.prevKv!.value)).toBe("2");
        expect(withPrev.prevKv!.version).toBe(2n);
      });

      it("does not return the value in the put answer", async () => {
        const p = fresh();
        const put = await kv.put({ key: `${p}a`, value: enc("payload") });
        expect(put.kv!.value.length).toBe(0);
      });

      it("orders keys bytewise on UTF-8, not on UTF-16 units", async () => {
        const p = fresh();
        // U+E000 is EE 80 80 in UTF-8 and sorts before U+1F600 (F0 9F 98 80);
        // JavaScript's < puts the surrogate pair of U+1F600 first.
        const keys = [`${p}\u{1F600}`, `${p}\uE000`, `${p}z`, `${p}\u00e9`];
        for (const key of keys) await kv.put({ key, value: enc(key) });
        const range = await kv.range({ prefix: p });
        expect(range.kvs.map((k) => k.key)).toEqual([
          `${p}z`,
          `${p}\u00e9`,
          `${p}\uE000`,
          `${p}\u{1F600}`,
        ]);
      });
    });

    describe("key and value rules", () => {
      it("refuses an empty key", async () => {
        await expectError(
          kv.put({ key: "", value: enc("x") }),
          Code.InvalidArgument,
          "INVALID_KEY",
        );
        await expectError(kv.get({ key: "" }), Code.InvalidArgument, "INVALID_KEY");
      });

      it("refuses a key over 1024 bytes, counting UTF-8 bytes", async () => {
        const meta = await expectError(
          kv.put({ key: "k".repeat(1025), value: enc("x") }),
          Code.InvalidArgument,
          "INVALID_KEY",
        );
        expect(meta.limit).toBe("1024");
        // 342 three-byte characters = 1026 bytes, though only 342 UTF-16 units.
        await expectError(
          kv.put({ key: "\u20ac".repeat(342), value: enc("x") }),
          Code.InvalidArgument,
          "INVALID_KEY",
        );
        const ok = await kv.put({ key: "k".repeat(1024), value: enc("x") });
        expect(ok.kv!.key.length).toBe(1024);
        await kv.delete({ key: "k".repeat(1024) });
      });

      it("refuses NUL in a key", async () => {
        await expectError(
          kv.put({ key: "a\u0000b", value: enc("x") }),
          Code.InvalidArgument,
          "INVALID_KEY",
        );
      });

      it("refuses keys in the reserved event namespaces", async () => {
        await expectError(
          kv.put({ key: "/locks/x", value: enc("x") }),
          Code.InvalidArgument,
          "INVALID_KEY",
        );
        await expectError(
          kv.put({ key: "/snapshots/x", value: enc("x") }),
          Code.InvalidArgument,
          "INVALID_KEY",
        );
      });

      it("refuses a value over 1 MiB with TOO_LARGE", async () => {
        const p = fresh();
        const meta = await expectError(
          kv.put({ key: `${p}big`, value: new Uint8Array(1024 * 1024 + 1) }),
          Code.InvalidArgument,
          "TOO_LARGE",
        );
        expect(meta.field).toBe("value");
        const ok = await kv.put({ key: `${p}max`, value: new Uint8Array(1024 * 1024) });
        expect(ok.kv!.version).toBe(1n);
      });

      it("refuses bad TTLs with INVALID_TTL", async () => {
        const p = fresh();
        await expectError(
          kv.put({ key: `${p}a`, value: enc("x"), ttl: ttl(9) }),
          Code.InvalidArgument,
          "INVALID_TTL",
        );
        await expectError(
          kv.put({ key: `${p}a`, value: enc("x"), ttl: ttl(0) }),
          Code.InvalidArgument,
          "INVALID_TTL",
        );
        await expectError(
          kv.put({ key: `${p}a`, value: enc("x"), ttl: { seconds: 366n * 24n * 3600n, nanos: 0 } }),
          Code.InvalidArgument,
          "INVALID_TTL",
        );
        await expectError(
          kv.put({ key: `${p}a`, value: enc("x"), ttl: { seconds: 1n, nanos: 500 } }),
          Code.InvalidArgument,
          "INVALID_TTL",
        );
        await expectError(
          kv.put({ key: `${p}a`, value: enc("x"), ttl: { seconds: -1n, nanos: 0 } }),
          Code.InvalidArgument,
          "INVALID_TTL",
        );
        expect((await kv.get({ key: `${p}a` })).kv).toBeUndefined();
      });

      it("refuses ttl together with lease_id", async () => {
        const p = fresh();
        await expectError(
          kv.put({ key: `${p}a`, value: enc("x"), ttl: ttl(1000), leaseId: 5n }),
          Code.InvalidArgument,
          "INVALID_ARGUMENT",
        );
      });

      it("refuses a put on a lease that does not exist with NOT_FOUND LEASE_NOT_FOUND", async () => {
        const p = fresh();
        await expectError(
          kv.put({ key: `${p}a`, value: enc("x"), leaseId: 424242n }),
          Code.NotFound,
          "LEASE_NOT_FOUND",
        );
        expect((await kv.get({ key: `${p}a` })).kv).toBeUndefined();
      });

      it("refuses int64 values beyond 2^53 instead of rounding them", async () => {
        const p = fresh();
        await expectError(
          kv.put({ key: `${p}a`, value: enc("x"), leaseId: 1n << 60n }),
          Code.InvalidArgument,
          "INVALID_ARGUMENT",
        );
      });
    });

    describe("TTL", () => {
      it("reports expire_time and hides the key once it passes", async () => {
        const p = fresh();
        const start = Date.now();
        const put = await kv.put({ key: `${p}t`, value: enc("x"), ttl: ttl(150) });
        const expireMs =
          Number(put.kv!.expireTime!.seconds) * 1000 + put.kv!.expireTime!.nanos / 1e6;
        expect(expireMs).toBeGreaterThanOrEqual(start + 100);
        expect(expireMs).toBeLessThanOrEqual(Date.now() + 200);
        expect((await kv.get({ key: `${p}t` })).kv?.expireTime).toEqual(put.kv!.expireTime);
        await sleep(Math.max(0, expireMs - Date.now()) + 30);
        expect((await kv.get({ key: `${p}t` })).kv).toBeUndefined();
        expect((await kv.range({ prefix: p })).kvs).toEqual([]);
        expect((await kv.range({ prefix: p, countOnly: true })).count).toBe(0n);
        expect((await kv.batchGet({ keys: [`${p}t`] })).kvs).toEqual([]);
      });

      it("keeps millisecond precision", async () => {
        const p = fresh();
        const put = await kv.put({
          key: `${p}t`,
          value: enc("x"),
          ttl: { seconds: 10n, nanos: 123_000_000 },
        });
        const before = Date.now();
        const expireMs =
          Number(put.kv!.expireTime!.seconds) * 1000 + put.kv!.expireTime!.nanos / 1e6;
        expect(Number.isInteger(expireMs)).toBe(true);
        expect(expireMs - before).toBeGreaterThan(10_000);
        expect(expireMs - before).toBeLessThanOrEqual(10_123 + 50);
        // Leave no expiry pending: later tests count revisions.
        await kv.delete({ key: `${p}t` });
      });

      it("a put after expiry creates the key afresh at version 1", async () => {
        const p = fresh();
        const first = await kv.put({ key: `${p}t`, value: enc("1"), ttl: ttl(50) });
        await sleep(80);
        const again = await kv.put({ key: `${p}t`, value: enc("2") });
        expect(again.kv!.version).toBe(1n);
        expect(again.kv!.createRevision).toBeGreaterThan(first.kv!.createRevision);
        expect(again.kv!.expireTime).toBeUndefined();
      });

      it("a put without ttl clears an earlier ttl; a put with ttl sets a new one", async () => {
        const p = fresh();
        await kv.put({ key: `${p}t`, value: enc("1"), ttl: ttl(60) });
        const cleared = await kv.put({ key: `${p}t`, value: enc("2") });
        expect(cleared.kv!.expireTime).toBeUndefined();
        await sleep(100);
        expect(dec((await kv.get({ key: `${p}t` })).kv?.value)).toBe("2");
      });

      it("expired keys fail must_exist and pass must_not_exist", async () => {
        const p = fresh();
        await kv.put({ key: `${p}t`, value: enc("1"), ttl: ttl(40) });
        await sleep(70);
        await expectError(
          kv.put({
            key: `${p}t`,
            value: enc("2"),
            precondition: { condition: { case: "mustExist", value: true } },
          }),
          Code.Aborted,
          "VERSION_MISMATCH",
        );
        const put = await kv.put({
          key: `${p}t`,
          value: enc("3"),
          precondition: { condition: { case: "mustNotExist", value: true } },
        });
        expect(put.kv!.version).toBe(1n);
      });

      it("the sweeper removes expired keys without any request touching them", async () => {
        const p = fresh();
        await kv.put({ key: `${p}gone`, value: enc("x"), ttl: ttl(30) });
        await kv.put({ key: `${p}kept`, value: enc("x") });
        const before = await revision();
        // The expiry is a mutation of its own: the revision moves without a write.
        const deadline = Date.now() + 3000;
        let now = before;
        while (now === before && Date.now() < deadline) {
          await sleep(20);
          now = await revision();
        }
        expect(now).toBe(before + 1n);
        expect((await kv.range({ prefix: p })).kvs.map((k) => k.key)).toEqual([`${p}kept`]);
      });
    });

    describe("preconditions", () => {
      const mustNotExist = { condition: { case: "mustNotExist" as const, value: true } };
      const mustExist = { condition: { case: "mustExist" as const, value: true } };

      it("must_not_exist: the first write wins, the second is VERSION_MISMATCH (Dapr first-write)", async () => {
        const p = fresh();
        const first = await kv.put({ key: `${p}a`, value: enc("1"), precondition: mustNotExist });
        expect(first.kv!.version).toBe(1n);
        const meta = await expectError(
          kv.put({ key: `${p}a`, value: enc("2"), precondition: mustNotExist }),
          Code.Aborted,
          "VERSION_MISMATCH",
        );
        expect(meta).toMatchObject({
          key: `${p}a`,
          current_version: "1",
          current_mod_revision: String(first.kv!.modRevision),
        });
        expect(dec((await kv.get({ key: `${p}a` })).kv!.value)).toBe("1");
      });

      it("must_not_exist under concurrency: exactly one of many writers wins", async () => {
        const p = fresh();
        const results = await Promise.allSettled(
          Array.from({ length: 20 }, (_, i) =>
            kv.put({ key: `${p}race`, value: enc(String(i)), precondition: mustNotExist }),
          ),
        );
        expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
      });

      it("must_exist fails on a missing key with current_version 0", async () => {
        const p = fresh();
        const meta = await expectError(
          kv.put({ key: `${p}a`, value: enc("1"), precondition: mustExist }),
          Code.Aborted,
          "VERSION_MISMATCH",
        );
        expect(meta.current_version).toBe("0");
        await kv.put({ key: `${p}a`, value: enc("1") });
        const ok = await kv.put({ key: `${p}a`, value: enc("2"), precondition: mustExist });
        expect(ok.kv!.version).toBe(2n);
      });

      it("version: equal succeeds, stale fails with the current version in metadata", async () => {
        const p = fresh();
        await kv.put({ key: `${p}a`, value: enc("1") });
        await kv.put({ key: `${p}a`, value: enc("2") });
        const meta = await expectError(
          kv.put({
            key: `${p}a`,
            value: enc("x"),
            precondition: { condition: { case: "version", value: 1n } },
          }),
          Code.Aborted,
          "VERSION_MISMATCH",
        );
        expect(meta.current_version).toBe("2");
        const ok = await kv.put({
          key: `${p}a`,
          value: enc("3"),
          precondition: { condition: { case: "version", value: 2n } },
        });
        expect(ok.kv!.version).toBe(3n);
      });

      it("version 0 means the key must not exist", async () => {
        const p = fresh();
        const ok = await kv.put({
          key: `${p}a`,
          value: enc("1"),
          precondition: { condition: { case: "version", value: 0n } },
        });
        expect(ok.kv!.version).toBe(1n);
        await expectError(
          kv.put({
            key: `${p}a`,
            value: enc("1"),
            precondition: { condition: { case: "version", value: 0n } },
          }),
          Code.Aborted,
          "VERSION_MISMATCH",
        );
      });

      it("mod_revision: equal succeeds, otherwise VERSION_MISMATCH", async () => {
        const p = fresh();
        const put = await kv.put({ key: `${p}a`, value: enc("1") });
        await expectError(
          kv.put({
            key: `${p}a`,
            value: enc("x"),
            precondition: { condition: { case: "modRevision", value: put.kv!.modRevision + 1n } },
          }),
          Code.Aborted,
          "VERSION_MISMATCH",
        );
        const ok = await kv.put({
          key: `${p}a`,
          value: enc("2"),
          precondition: { condition: { case: "modRevision", value: put.kv!.modRevision } },
        });
        expect(ok.kv!.version).toBe(2n);
      });

      it("a failed precondition changes nothing and does not advance the revision", async () => {
        const p = fresh();
        await kv.put({ key: `${p}a`, value: enc("1") });
        const before = await revision();
        await expectError(
          kv.put({ key: `${p}a`, value: enc("2"), precondition: mustNotExist }),
          Code.Aborted,
          "VERSION_MISMATCH",
        );
        expect(await revision()).toBe(before);
      });

      it("a false must_exist / must_not_exist is refused rather than ignored", async () => {
        const p = fresh();
        await expectError(
          kv.put({
            key: `${p}a`,
            value: enc("1"),
            precondition: { condition: { case: "mustExist", value: false } },
          }),
          Code.InvalidArgument,
          "INVALID_ARGUMENT",
        );
      });

      it("compare-and-swap loop: concurrent increments lose no update", async () => {
        const p = fresh();
        await kv.put({ key: `${p}n`, value: enc("0") });
        const increment = async () => {
          for (;;) {
            const cur = (await kv.get({ key: `${p}n` })).kv!;
            try {
              await kv.put({
                key: `${p}n`,
                value: enc(String(Number(dec(cur.value)) + 1)),
                precondition: { condition: { case: "version", value: cur.version } },
              });
              return;
            } catch {
              // VERSION_MISMATCH: re-read and retry.
            }
          }
        };
        await Promise.all(
          Array.from({ length: 10 }, () => Promise.all([increment(), increment()])),
        );
        const final = (await kv.get({ key: `${p}n` })).kv!;
        expect(dec(final.value)).toBe("20");
        expect(final.version).toBe(21n);
      });
    });

    describe("Delete", () => {
      it("deletes one key and answers prev_kvs when asked", async () => {
        const p = fresh();
        await kv.put({ key: `${p}a`, value: enc("1") });
        const before = await revision();
        const del = await kv.delete({ key: `${p}a`, prevKv: true });
        expect(del.deleted).toBe(1n);
        expect(del.header!.revision).toBe(before + 1n);
        expect(del.prevKvs.map((k) => dec(k.value))).toEqual(["1"]);
        expect((await kv.get({ key: `${p}a` })).kv).toBeUndefined();
      });

      it("is idempotent: deleting a missing key succeeds with deleted = 0 and no revision (Dapr)", async () => {
        const p = fresh();
        const before = await revision();
        const del = await kv.delete({ key: `${p}nothing` });
        expect(del.deleted).toBe(0n);
        expect(del.header!.revision).toBe(before);
      });

      it("deletes a prefix atomically at one revision", async () => {
        const p = fresh();
        for (const k of ["a", "b", "c"]) await kv.put({ key: `${p}dir/${k}`, value: enc(k) });
        await kv.put({ key: `${p}dirx`, value: enc("outside") });
        const before = await revision();
        const del = await kv.delete({ prefix: `${p}dir/`, prevKv: true });
        expect(del.deleted).toBe(3n);
        expect(del.header!.revision).toBe(before + 1n);
        expect(del.prevKvs.map((k) => k.key)).toEqual([`${p}dir/a`, `${p}dir/b`, `${p}dir/c`]);
        expect((await kv.range({ prefix: p })).kvs.map((k) => k.key)).toEqual([`${p}dirx`]);
      });

      it("honours preconditions on a single key", async () => {
        const p = fresh();
        await kv.put({ key: `${p}a`, value: enc("1") });
        await expectError(
          kv.delete({ key: `${p}a`, precondition: { condition: { case: "version", value: 7n } } }),
          Code.Aborted,
          "VERSION_MISMATCH",
        );
        const del = await kv.delete({
          key: `${p}a`,
          precondition: { condition: { case: "version", value: 1n } },
        });
        expect(del.deleted).toBe(1n);
      });

      it("refuses key with prefix, neither, an empty prefix and a precondition on a prefix", async () => {
        const p = fresh();
        await expectError(
          kv.delete({ key: `${p}a`, prefix: p }),
          Code.InvalidArgument,
          "INVALID_ARGUMENT",
        );
        await expectError(kv.delete({}), Code.InvalidArgument, "INVALID_ARGUMENT");
        await expectError(
          kv.delete({ prefix: p, precondition: { condition: { case: "version", value: 1n } } }),
          Code.InvalidArgument,
          "INVALID_ARGUMENT",
        );
      });
    });

    describe("BatchGet", () => {
      it("returns found keys in request order, skipping missing ones", async () => {
        const p = fresh();
        await kv.put({ key: `${p}a`, value: enc("A") });
        await kv.put({ key: `${p}b`, value: enc("B") });
        const got = await kv.batchGet({ keys: [`${p}b`, `${p}missing`, `${p}a`, `${p}b`] });
        expect(got.kvs.map((k) => dec(k.value))).toEqual(["B", "A", "B"]);
      });

      it("refuses more than 1000 keys with TOO_LARGE and an empty list", async () => {
        const p = fresh();
        const keys = Array.from({ length: 1001 }, (_, i) => `${p}${i}`);
        await expectError(kv.batchGet({ keys }), Code.InvalidArgument, "TOO_LARGE");
        await expectError(kv.batchGet({ keys: [] }), Code.InvalidArgument, "INVALID_ARGUMENT");
        const ok = await kv.batchGet({ keys: keys.slice(0, 1000) });
        expect(ok.kvs).toEqual([]);
      });

      it("refuses a bad key and names it", async () => {
        const p = fresh();
        const meta = await expectError(
          kv.batchGet({ keys: [`${p}a`, ""] }),
          Code.InvalidArgument,
          "INVALID_KEY",
        );
        expect(meta.field).toBe("keys[1]");
      });

      it("reads one consistent point in time", async () => {
        const p = fresh();
        await kv.put({ key: `${p}x`, value: enc("0") });
        await kv.put({ key: `${p}y`, value: enc("0") });
        // Writers always move x and y together in one Txn; readers must never see them differ.
        let stop = false;
        const writer = (async () => {
          for (let i = 1; !stop; i++) {
            await kv.txn({
              success: [
                { request: { case: "put", value: { key: `${p}x`, value: enc(String(i)) } } },
                { request: { case: "put", value: { key: `${p}y`, value: enc(String(i)) } } },
              ],
            });
          }
        })();
        for (let i = 0; i < 100; i++) {
          const got = await kv.batchGet({ keys: [`${p}x`, `${p}y`] });
          expect(dec(got.kvs[0]!.value)).toBe(dec(got.kvs[1]!.value));
        }
        stop = true;
        await writer;
      });
    });

    describe("Range", () => {
      const seed = async (p: string, n: number) => {
        for (let i = 0; i < n; i++)
          await kv.put({ key: `${p}k${String(i).padStart(3, "0")}`, value: enc(String(i)) });
      };

      it("lists a prefix in key order with values and count", async () => {
        const p = fresh();
        await seed(p, 5);
        await kv.put({ key: `${p.slice(0, -1)}0`, value: enc("outside") });
        const range = await kv.range({ prefix: p });
        expect(range.kvs.map((k) => dec(k.value))).toEqual(["0", "1", "2", "3", "4"]);
        expect(range.count).toBe(5n);
        expect(range.nextPageToken).toBe("");
      });

      it("lists [start, end)", async () => {
        const p = fresh();
        await seed(p, 6);
        const range = await kv.range({ start: `${p}k001`, end: `${p}k004` });
        expect(range.kvs.map((k) => k.key)).toEqual([`${p}k001`, `${p}k002`, `${p}k003`]);
        const open = await kv.range({ start: `${p}k004` });
        expect(open.kvs.map((k) => k.key).filter((k) => k.startsWith(p))).toEqual([
          `${p}k004`,
          `${p}k005`,
        ]);
      });

      it("pages with stable tokens and a count of what remains", async () => {
        const p = fresh();
        await seed(p, 7);
        const seen: string[] = [];
        let token = "";
        const counts: bigint[] = [];
        do {
          const page = await kv.range({ prefix: p, limit: 3n, pageToken: token });
          seen.push(...page.kvs.map((k) => k.key));
          counts.push(page.count);
          token = page.nextPageToken;
        } while (token !== "");
        expect(seen).toEqual(Array.from({ length: 7 }, (_, i) => `${p}k00${i}`));
        expect(counts).toEqual([7n, 4n, 1n]);
      });

      it("never returns a key twice while keys are written and deleted between pages", async () => {
        const p = fresh();
        await seed(p, 30);
        const seen: string[] = [];
        let token = "";
        let round = 0;
        do {
          const page = await kv.range({ prefix: p, limit: 4n, pageToken: token });
          seen.push(...page.kvs.map((k) => k.key));
          token = page.nextPageToken;
          // Concurrent writers: insert before and after the cursor, delete ahead of it.
          await Promise.all([
            kv.put({ key: `${p}a${round}`, value: enc("before the cursor") }),
            kv.put({ key: `${p}k${String(100 + round)}`, value: enc("after the cursor") }),
            kv.delete({ key: `${p}k${String(29 - round).padStart(3, "0")}` }),
          ]);
          round++;
        } while (token !== "");
        expect(new Set(seen).size).toBe(seen.length);
        expect(seen.some((k) => k.startsWith(`${p}a`))).toBe(false);
        expect(seen).toEqual([...seen].sort());
        expect(seen.filter((k) => k >= `${p}k100`).length).toBeGreaterThan(0);
      });

      it("keys_only omits values; count_only returns only the count", async () => {
        const p = fresh();
        await seed(p, 3);
        const keysOnly = await kv.range({ prefix: p, keysOnly: true });
        expect(keysOnly.kvs).toHaveLength(3);
        expect(keysOnly.kvs.every((k) => k.value.length === 0 && k.version === 1n)).toBe(true);
        const countOnly = await kv.range({ prefix: p, countOnly: true });
        expect(countOnly.kvs).toEqual([]);
        expect(countOnly.count).toBe(3n);
        expect(countOnly.nextPageToken).toBe("");
      });

      it("refuses malformed page tokens and tokens of another range", async () => {
        const p = fresh();
        await seed(p, 3);
        await expectError(
          kv.range({ prefix: p, pageToken: "not-a-token" }),
          Code.InvalidArgument,
          "INVALID_PAGE_TOKEN",
        );
        await expectError(
          kv.range({ prefix: p, pageToken: "eyJ4IjoxfQ" }),
          Code.InvalidArgument,
          "INVALID_PAGE_TOKEN",
        );
        const page = await kv.range({ prefix: p, limit: 1n });
        await expectError(
          kv.range({ prefix: `${p}k`, pageToken: page.nextPageToken }),
          Code.InvalidArgument,
          "INVALID_PAGE_TOKEN",
        );
      });

      it("refuses a limit over the page maximum, a negative limit, end before start, prefix with start", async () => {
        const p = fresh();
        await expectError(
          kv.range({ prefix: p, limit: 10_001n }),
          Code.InvalidArgument,
          "TOO_LARGE",
        );
        await expectError(
          kv.range({ prefix: p, limit: -1n }),
          Code.InvalidArgument,
          "INVALID_ARGUMENT",
        );
        await expectError(
          kv.range({ start: `${p}b`, end: `${p}a` }),
          Code.InvalidArgument,
          "INVALID_ARGUMENT",
        );
        await expectError(
          kv.range({ prefix: p, start: `${p}a` }),
          Code.InvalidArgument,
          "INVALID_ARGUMENT",
        );
      });
    });

    describe("Txn", () => {
      const put = (key: string, value: string) => ({
        request: { case: "put" as const, value: { key, value: enc(value) } },
      });
      const get = (key: string) => ({ request: { case: "get" as const, value: { key } } });
      const del = (key: string) => ({ request: { case: "delete" as const, value: { key } } });
      const cmp = (
        key: string,
        operator: Compare_Operator,
        target:
          | { case: "version" | "modRevision" | "createRevision" | "leaseId"; value: bigint }
          | { case: "value"; value: Uint8Array }
          | { case: "exists"; value: boolean },
      ) => ({
        key,
        operator,
        target,
      });

      it("runs the success branch when every compare holds, all at one revision", async () => {
        const p = fresh();
        await kv.put({ key: `${p}a`, value: enc("1") });
        const before = await revision();
        const txn = await kv.txn({
          compare: [
            cmp(`${p}a`, Op.EQUAL, { case: "version", value: 1n }),
            cmp(`${p}b`, Op.EQUAL, { case: "exists", value: false }),
          ],
          success: [put(`${p}a`, "2"), put(`${p}b`, "B"), get(`${p}a`)],
          failure: [get(`${p}a`)],
        });
        expect(txn.succeeded).toBe(true);
        expect(txn.header!.revision).toBe(before + 1n);
        expect(txn.responses.map((r) => r.response.case)).toEqual(["put", "put", "get"]);
        const a = txn.responses[0]!.response;
        expect(a.case === "put" && a.value.kv!.modRevision).toBe(before + 1n);
        // Ops apply in order: the get sees the put before it.
        const g = txn.responses[2]!.response;
        expect(g.case === "get" && dec(g.value.kv!.value)).toBe("2");
        expect((await kv.get({ key: `${p}b` })).kv!.modRevision).toBe(before + 1n);
      });

      it("runs the failure branch otherwise and is not an error", async () => {
        const p = fresh();
        await kv.put({ key: `${p}a`, value: enc("1") });
        const before = await revision();
        const txn = await kv.txn({
          compare: [cmp(`${p}a`, Op.EQUAL, { case: "value", value: enc("nope") })],
          success: [put(`${p}a`, "2")],
          failure: [get(`${p}a`)],
        });
        expect(txn.succeeded).toBe(false);
        // A branch that only reads does not advance the revision.
        expect(txn.header!.revision).toBe(before);
        const g = txn.responses[0]!.response;
        expect(g.case === "get" && dec(g.value.kv!.value)).toBe("1");
      });

      it("supports every compare target and operator", async () => {
        const p = fresh();
        const a = await kv.put({ key: `${p}a`, value: enc("m") });
        const mod = a.kv!.modRevision;
        const check = async (c: ReturnType<typeof cmp>) =>
          (await kv.txn({ compare: [c] })).succeeded;
        expect(await check(cmp(`${p}a`, Op.GREATER, { case: "version", value: 0n }))).toBe(true);
        expect(await check(cmp(`${p}a`, Op.LESS, { case: "version", value: 1n }))).toBe(false);
        expect(await check(cmp(`${p}a`, Op.NOT_EQUAL, { case: "modRevision", value: mod }))).toBe(
          false,
        );
        expect(await check(cmp(`${p}a`, Op.EQUAL, { case: "createRevision", value: mod }))).toBe(
          true,
        );
        expect(await check(cmp(`${p}a`, Op.GREATER, { case: "value", value: enc("l") }))).toBe(
          true,
        );
        expect(await check(cmp(`${p}a`, Op.LESS, { case: "value", value: enc("l") }))).toBe(false);
        expect(await check(cmp(`${p}a`, Op.EQUAL, { case: "leaseId", value: 0n }))).toBe(true);
        expect(await check(cmp(`${p}a`, Op.NOT_EQUAL, { case: "exists", value: false }))).toBe(
          true,
        );
        // An unspecified operator means EQUAL.
        expect(
          await check(cmp(`${p}a`, Op.OPERATOR_UNSPECIFIED, { case: "version", value: 1n })),
        ).toBe(true);
        // A missing key has version 0 and never matches a value compare.
        expect(await check(cmp(`${p}zz`, Op.EQUAL, { case: "version", value: 0n }))).toBe(true);
        expect(await check(cmp(`${p}zz`, Op.NOT_EQUAL, { case: "value", value: enc("x") }))).toBe(
          false,
        );
      });

      it("applies deletes and puts of one branch in order, atomically (Dapr transaction order)", async () => {
        const p = fresh();
        await kv.put({ key: `${p}old`, value: enc("1") });
        const before = await revision();
        const txn = await kv.txn({
          success: [del(`${p}old`), put(`${p}new`, "2"), get(`${p}old`)],
        });
        expect(txn.header!.revision).toBe(before + 1n);
        const d = txn.responses[0]!.response;
        expect(d.case === "delete" && d.value.deleted).toBe(1n);
        const g = txn.responses[2]!.response;
        expect(g.case === "get" && g.value.kv).toBeUndefined();
      });

      it("holds ranges and prefix deletes", async () => {
        const p = fresh();
        await kv.put({ key: `${p}d/1`, value: enc("1") });
        await kv.put({ key: `${p}d/2`, value: enc("2") });
        const txn = await kv.txn({
          success: [
            { request: { case: "range", value: { prefix: `${p}d/` } } },
            { request: { case: "delete", value: { prefix: `${p}d/` } } },
          ],
        });
        const r = txn.responses[0]!.response;
        expect(r.case === "range" && r.value.kvs.length).toBe(2);
        const d = txn.responses[1]!.response;
        expect(d.case === "delete" && d.value.deleted).toBe(2n);
      });

      it("is atomic under concurrency: a transfer never creates or loses units", async () => {
        const p = fresh();
        await kv.put({ key: `${p}x`, value: enc("100") });
        await kv.put({ key: `${p}y`, value: enc("0") });
        const transfer = async () => {
          for (;;) {
            const got = await kv.batchGet({ keys: [`${p}x`, `${p}y`] });
            const [x, y] = got.kvs;
            const txn = await kv.txn({
              compare: [
                cmp(`${p}x`, Op.EQUAL, { case: "modRevision", value: x!.modRevision }),
                cmp(`${p}y`, Op.EQUAL, { case: "modRevision", value: y!.modRevision }),
              ],
              success: [
                put(`${p}x`, String(Number(dec(x!.value)) - 1)),
                put(`${p}y`, String(Number(dec(y!.value)) + 1)),
              ],
            });
            if (txn.succeeded) return;
          }
        };
        await Promise.all(Array.from({ length: 15 }, transfer));
        const final = await kv.batchGet({ keys: [`${p}x`, `${p}y`] });
        expect(final.kvs.map((k) => dec(k.value))).toEqual(["85", "15"]);
      });

      it("refuses two writes of one key, ops with their own precondition, and malformed compares", async () => {
        const p = fresh();
        await expectError(
          kv.txn({ success: [put(`${p}a`, "1"), put(`${p}a`, "2")] }),
          Code.InvalidArgument,
          "INVALID_ARGUMENT",
        );
        await expectError(
          kv.txn({
            success: [
              put(`${p}d/a`, "1"),
              { request: { case: "delete", value: { prefix: `${p}d/` } } },
            ],
          }),
          Code.InvalidArgument,
          "INVALID_ARGUMENT",
        );
        await expectError(
          kv.txn({
            success: [
              {
                request: {
                  case: "put",
                  value: {
                    key: `${p}a`,
                    value: enc("1"),
                    precondition: { condition: { case: "mustExist", value: true } },
                  },
                },
              },
            ],
          }),
          Code.InvalidArgument,
          "INVALID_ARGUMENT",
        );
        await expectError(
          kv.txn({ compare: [{ key: `${p}a`, operator: Op.EQUAL }] }),
          Code.InvalidArgument,
          "INVALID_ARGUMENT",
        );
        await expectError(
          kv.txn({ compare: [cmp(`${p}a`, Op.GREATER, { case: "exists", value: true })] }),
          Code.InvalidArgument,
          "INVALID_ARGUMENT",
        );
        await expectError(
          kv.txn({
            compare: [cmp(`${p}a`, 99 as Compare_Operator, { case: "version", value: 1n })],
          }),
          Code.InvalidArgument,
          "INVALID_ARGUMENT",
        );
        await expectError(
          kv.txn({ success: [{ request: { case: undefined } }] }),
          Code.InvalidArgument,
          "INVALID_ARGUMENT",
        );
        await expectError(kv.txn({ success: [put("", "1")] }), Code.InvalidArgument, "INVALID_KEY");
      });

      it("refuses more than 128 ops with TOO_LARGE", async () => {
        const p = fresh();
        const ops = Array.from({ length: 129 }, (_, i) => put(`${p}${i}`, "x"));
        await expectError(kv.txn({ success: ops }), Code.InvalidArgument, "TOO_LARGE");
      });
    });

    describe("fence", () => {
      it("lets a write through when no newer token was ever granted for the lock", async () => {
        const p = fresh();
        const put = await kv.put({
          key: `${p}a`,
          value: enc("1"),
          fence: { lockName: `${p}never-locked`, token: 1n },
        });
        expect(put.kv!.version).toBe(1n);
      });

      it("refuses a fence with an empty lock name or a negative token", async () => {
        const p = fresh();
        await expectError(
          kv.put({ key: `${p}a`, value: enc("1"), fence: { lockName: "", token: 1n } }),
          Code.InvalidArgument,
          "INVALID_KEY",
        );
        await expectError(
          kv.put({ key: `${p}a`, value: enc("1"), fence: { lockName: "l", token: -1n } }),
          Code.InvalidArgument,
          "INVALID_ARGUMENT",
        );
      });
    });
  });
}
