/**
 * Lease and lock conformance: LeaseService (etcd model), LockService (the
 * Dapr lock conformance cases and more), fencing tokens and fenced KV
 * writes, waiters, and the LOCK_* and lease EXPIRE events. Runs on every
 * backend through a real server and a real gRPC client.
 */
import { randomBytes } from "node:crypto";
import { type Client, Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KvService } from "../../src/gen/latchkey/v1/kv_pb.js";
import { LeaseService } from "../../src/gen/latchkey/v1/lease_pb.js";
import {
  ExtendResponse_Status,
  LockService,
  ReleaseResponse_Status,
} from "../../src/gen/latchkey/v1/lock_pb.js";
import { EventKind, WatchService } from "../../src/gen/latchkey/v1/watch_pb.js";
import { connectClients, type Protocol } from "../support/clients.js";
import { expectError } from "../support/errors.js";
import type { TestServer } from "../support/test-server.js";
import { WatchReader } from "../support/watch-reader.js";

const enc = (s: string) => new TextEncoder().encode(s);
const ms = (n: number) => ({
  seconds: BigInt(Math.floor(n / 1000)),
  nanos: (n % 1000) * 1_000_000,
});
const sleep = (n: number) => new Promise((r) => setTimeout(r, n));

export interface LockContractOptions {
  readonly start: (env?: Record<string, string>) => Promise<TestServer>;
  readonly protocol?: Protocol;
}

export function describeLockContract(name: string, options: LockContractOptions): void {
  describe(`LeaseService and LockService conformance: ${name}`, () => {
    let server: TestServer;
    let clients: ReturnType<typeof connectClients>;
    let kv: Client<typeof KvService>;
    let leases: Client<typeof LeaseService>;
    let locks: Client<typeof LockService>;
    let watch: Client<typeof WatchService>;
    const readers: WatchReader[] = [];

    beforeAll(async () => {
      server = await options.start({ LATCHKEY_MAX_LOCK_TTL_MS: "60000" });
      clients = connectClients(server.baseUrl, options.protocol ?? "grpc");
      kv = clients.client(KvService);
      leases = clients.client(LeaseService);
      locks = clients.client(LockService);
      watch = clients.client(WatchService);
    });
    afterAll(async () => {
      for (const r of readers) r.close();
      clients?.close();
      await server?.close();
    });

    const fresh = () => `l-${randomBytes(4).toString("hex")}`;
    const watchLocks = async (prefix: string) => {
      const reader = new WatchReader((signal) => watch.watch({ prefix }, { signal }));
      readers.push(reader);
      await reader.next();
      return reader;
    };

    describe("LockService (Dapr lock conformance)", () => {
      it("try-lock grants a free lock with a fencing token and the holder's details", async () => {
        const name = fresh();
        const before = Date.now();
        const got = await locks.acquire({ name, owner: "a", ttl: ms(5000) });
        expect(got.acquired).toBe(true);
        expect(got.lock).toMatchObject({ name, owner: "a", leaseId: 0n });
        expect(got.lock!.fencingToken).toBeGreaterThan(0n);
        const expire =
          Number(got.lock!.expireTime!.seconds) * 1000 + got.lock!.expireTime!.nanos / 1e6;
        expect(expire).toBeGreaterThan(before + 4000);
        expect(expire).toBeLessThanOrEqual(Date.now() + 5000);
      });

      it("a second owner does not get a held lock: acquired = false with the holder, not an error", async () => {
        const name = fresh();
        const a = await locks.acquire({ name, owner: "a", ttl: ms(5000) });
        const b = await locks.acquire({ name, owner: "b", ttl: ms(5000) });
        expect(b.acquired).toBe(false);
        expect(b.lock).toMatchObject({ name, owner: "a", fencingToken: a.lock!.fencingToken });
      });

      it("re-acquire by the same owner is idempotent and returns the same token", async () => {
        const name = fresh();
        const first = await locks.acquire({ name, owner: "a", ttl: ms(5000) });
        const again = await locks.acquire({ name, owner: "a", ttl: ms(5000) });
        expect(again.acquired).toBe(true);
        expect(again.lock!.fencingToken).toBe(first.lock!.fencingToken);
      });

      it("release: RELEASED for the holder, NOT_OWNER for another token, NOT_FOUND when not held", async () => {
        const name = fresh();
        const got = await locks.acquire({ name, owner: "a", ttl: ms(5000) });
        const token = got.lock!.fencingToken;
        expect((await locks.release({ name, fencingToken: token + 1n })).status).toBe(
          ReleaseResponse_Status.NOT_OWNER,
        );
        expect((await locks.release({ name, fencingToken: token })).status).toBe(
          ReleaseResponse_Status.RELEASED,
        );
        expect((await locks.release({ name, fencingToken: token })).status).toBe(
          ReleaseResponse_Status.NOT_FOUND,
        );
        expect((await locks.release({ name: fresh(), fencingToken: 1n })).status).toBe(
          ReleaseResponse_Status.NOT_FOUND,
        );
        const next = await locks.acquire({ name, owner: "b", ttl: ms(5000) });
        expect(next.acquired).toBe(true);
      });

      it("a lock expires after its TTL and another owner takes it with a higher token", async () => {
        const name = fresh();
        const a = await locks.acquire({ name, owner: "a", ttl: ms(100) });
        await sleep(160);
        const d = await locks.describe({ name });
        expect(d.held).toBe(false);
        const b = await locks.acquire({ name, owner: "b", ttl: ms(5000) });
        expect(b.acquired).toBe(true);
        expect(b.lock!.fencingToken).toBeGreaterThan(a.lock!.fencingToken);
      });

      it("fencing tokens strictly increase over every grant of a name", async () => {
        const name = fresh();
        const tokens: bigint[] = [];
        for (let i = 0; i < 10; i++) {
          const got = await locks.acquire({ name, owner: `o${i}`, ttl: ms(5000) });
          expect(got.acquired).toBe(true);
          tokens.push(got.lock!.fencingToken);
          await locks.release({ name, fencingToken: got.lock!.fencingToken });
        }
        for (let i = 1; i < tokens.length; i++) expect(tokens[i]!).toBeGreaterThan(tokens[i - 1]!);
      });

      it("extend: EXTENDED moves the expiry; NOT_OWNER and NOT_FOUND otherwise", async () => {
        const name = fresh();
        const got = await locks.acquire({ name, owner: "a", ttl: ms(300) });
        const token = got.lock!.fencingToken;
        const ext = await locks.extend({ name, fencingToken: token, ttl: ms(5000) });
        expect(ext.status).toBe(ExtendResponse_Status.EXTENDED);
        expect(ext.lock!.expireTime!.seconds).toBeGreaterThan(got.lock!.expireTime!.seconds);
        await sleep(400);
        expect((await locks.describe({ name })).held).toBe(true);
        expect((await locks.extend({ name, fencingToken: token + 1n, ttl: ms(5000) })).status).toBe(
          ExtendResponse_Status.NOT_OWNER,
        );
        await locks.release({ name, fencingToken: token });
        expect((await locks.extend({ name, fencingToken: token, ttl: ms(5000) })).status).toBe(
          ExtendResponse_Status.NOT_FOUND,
        );
      });

      it("describe and list show held locks by prefix, in name order", async () => {
        const p = fresh();
        await locks.acquire({ name: `${p}/b`, owner: "x", ttl: ms(5000) });
        await locks.acquire({ name: `${p}/a`, owner: "y", ttl: ms(5000) });
        const listed = await locks.list({ prefix: `${p}/` });
        expect(listed.locks.map((l) => [l.name, l.owner])).toEqual([
          [`${p}/a`, "y"],
          [`${p}/b`, "x"],
        ]);
        const d = await locks.describe({ name: `${p}/a` });
        expect(d.held).toBe(true);
        expect(d.lock!.owner).toBe("y");
        expect((await locks.describe({ name: `${p}/none` })).held).toBe(false);
      });

      it("refuses bad requests with INVALID_ARGUMENT", async () => {
        await expectError(
          locks.acquire({ name: "", owner: "a", ttl: ms(1000) }),
          Code.InvalidArgument,
          "INVALID_KEY",
        );
        await expectError(
          locks.acquire({ name: fresh(), owner: "", ttl: ms(1000) }),
          Code.InvalidArgument,
          "INVALID_ARGUMENT",
        );
        await expectError(
          locks.acquire({ name: fresh(), owner: "a" }),
          Code.InvalidArgument,
          "INVALID_TTL",
        );
        await expectError(
          locks.acquire({ name: fresh(), owner: "a", ttl: ms(1000), leaseId: 5n }),
          Code.InvalidArgument,
          "INVALID_ARGUMENT",
        );
        await expectError(
          locks.acquire({ name: fresh(), owner: "a", ttl: ms(61_000) }),
          Code.InvalidArgument,
          "INVALID_TTL",
        );
        await expectError(
          locks.acquire({ name: fresh(), owner: "a", ttl: ms(5) }),
          Code.InvalidArgument,
          "INVALID_TTL",
        );
        await expectError(
          locks.acquire({ name: fresh(), owner: "o".repeat(257), ttl: ms(1000) }),
          Code.InvalidArgument,
          "TOO_LARGE",
        );
        await expectError(
          locks.acquire({ name: fresh(), owner: "a", leaseId: 777n }),
          Code.NotFound,
          "LEASE_NOT_FOUND",
        );
        await expectError(
          locks.release({ name: "", fencingToken: 1n }),
          Code.InvalidArgument,
          "INVALID_KEY",
        );
        await expectError(
          locks.extend({ name: fresh(), fencingToken: 1n }),
          Code.InvalidArgument,
          "INVALID_TTL",
        );
      });
    });

    describe("waiting", () => {
      it("a waiter gets the lock as soon as it is released", async () => {
        const name = fresh();
        const a = await locks.acquire({ name, owner: "a", ttl: ms(10_000) });
        const waiting = locks.acquire({ name, owner: "b", ttl: ms(5000), waitTimeout: ms(5000) });
        await sleep(100);
        const released = Date.now();
        await locks.release({ name, fencingToken: a.lock!.fencingToken });
        const b = await waiting;
        expect(b.acquired).toBe(true);
        expect(b.lock!.owner).toBe("b");
        expect(Date.now() - released).toBeLessThan(1000);
        expect(b.lock!.fencingToken).toBeGreaterThan(a.lock!.fencingToken);
      });

      it("a waiter gets the lock when the holder's TTL runs out", async () => {
        const name = fresh();
        await locks.acquire({ name, owner: "a", ttl: ms(200) });
        const b = await locks.acquire({ name, owner: "b", ttl: ms(5000), waitTimeout: ms(3000) });
        expect(b.acquired).toBe(true);
      });

      it("waiters of one replica are served first come, first served", async () => {
        const name = fresh();
        const a = await locks.acquire({ name, owner: "a", ttl: ms(10_000) });
        const order: string[] = [];
        const waiters = ["w1", "w2", "w3"].map(async (owner, i) => {
          await sleep(30 * i);
          const got = await locks.acquire({ name, owner, ttl: ms(5000), waitTimeout: ms(8000) });
          order.push(owner);
          expect(got.acquired).toBe(true);
          await sleep(20);
          await locks.release({ name, fencingToken: got.lock!.fencingToken });
        });
        await sleep(150);
        await locks.release({ name, fencingToken: a.lock!.fencingToken });
        await Promise.all(waiters);
        expect(order).toEqual(["w1", "w2", "w3"]);
      });

      it("wait_timeout ends the wait with acquired = false and the holder", async () => {
        const name = fresh();
        await locks.acquire({ name, owner: "a", ttl: ms(10_000) });
        const start = Date.now();
        const b = await locks.acquire({ name, owner: "b", ttl: ms(5000), waitTimeout: ms(200) });
        expect(b.acquired).toBe(false);
        expect(b.lock!.owner).toBe("a");
        expect(Date.now() - start).toBeGreaterThanOrEqual(150);
        expect(Date.now() - start).toBeLessThan(2000);
      });

      it("a waiter whose client goes away leaves the queue at once", async () => {
        const name = fresh();
        const a = await locks.acquire({ name, owner: "a", ttl: ms(10_000) });
        const abort = new AbortController();
        const gone = locks.acquire(
          { name, owner: "gone", ttl: ms(5000), waitTimeout: ms(8000) },
          { signal: abort.signal },
        );
        await sleep(50);
        const next = locks.acquire({ name, owner: "next", ttl: ms(5000), waitTimeout: ms(8000) });
        await sleep(50);
        abort.abort();
        await expect(gone).rejects.toThrow();
        await locks.release({ name, fencingToken: a.lock!.fencingToken });
        const got = await next;
        expect(got.acquired).toBe(true);
        expect(got.lock!.owner).toBe("next");
      });

      it("the call deadline bounds the wait: the answer comes before it", async () => {
        const name = fresh();
        await locks.acquire({ name, owner: "a", ttl: ms(10_000) });
        const start = Date.now();
        const b = await locks.acquire(
          { name, owner: "b", ttl: ms(5000), waitTimeout: ms(9000) },
          { timeoutMs: 1000 },
        );
        expect(b.acquired).toBe(false);
        expect(Date.now() - start).toBeGreaterThanOrEqual(800);
        expect(Date.now() - start).toBeLessThan(1000);
      });
    });

    describe("fencing: the store refuses stale holders", () => {
      it("a write fenced with the current token passes; after a newer grant it fails FENCE_STALE", async () => {
        const name = fresh();
        const k = `${fresh()}/data`;
        const a = await locks.acquire({ name, owner: "a", ttl: ms(100) });
        const aToken = a.lock!.fencingToken;
        await kv.put({ key: k, value: enc("a1"), fence: { lockName: name, token: aToken } });
        await sleep(150);
        const b = await locks.acquire({ name, owner: "b", ttl: ms(5000) });
        expect(b.lock!.fencingToken).toBeGreaterThan(aToken);
        const meta = await expectError(
          kv.put({ key: k, value: enc("a2"), fence: { lockName: name, token: aToken } }),
          Code.Aborted,
          "FENCE_STALE",
        );
        expect(meta).toMatchObject({
          lock_name: name,
          current_token: String(b.lock!.fencingToken),
        });
        await expectError(
          kv.delete({ key: k, fence: { lockName: name, token: aToken } }),
          Code.Aborted,
          "FENCE_STALE",
        );
        await expectError(
          kv.txn({
            fence: { lockName: name, token: aToken },
            success: [{ request: { case: "delete", value: { key: k } } }],
          }),
          Code.Aborted,
          "FENCE_STALE",
        );
        expect(new TextDecoder().decode((await kv.get({ key: k })).kv!.value)).toBe("a1");
        await kv.put({
          key: k,
          value: enc("b1"),
          fence: { lockName: name, token: b.lock!.fencingToken },
        });
      });
    });

    describe("lock events", () => {
      it("LOCK_ACQUIRED, LOCK_RELEASED and LOCK_EXPIRED under /locks/<name>", async () => {
        const name = fresh();
        const reader = await watchLocks(`/locks/${name}`);
        const got = await locks.acquire({ name, owner: "a", ttl: ms(5000) });
        const acquired = await reader.nextEvents();
        expect(acquired.events[0]!.kind).toBe(EventKind.LOCK_ACQUIRED);
        expect(acquired.events[0]!.kv!.key).toBe(`/locks/${name}`);
        expect(acquired.events[0]!.lock).toMatchObject({
          name,
          owner: "a",
          fencingToken: got.lock!.fencingToken,
        });
        await locks.release({ name, fencingToken: got.lock!.fencingToken });
        expect((await reader.nextEvents()).events[0]!.kind).toBe(EventKind.LOCK_RELEASED);
        await locks.acquire({ name, owner: "b", ttl: ms(60) });
        expect((await reader.nextEvents()).events[0]!.kind).toBe(EventKind.LOCK_ACQUIRED);
        const expired = await reader.nextEvents(3000);
        expect(expired.events[0]!.kind).toBe(EventKind.LOCK_EXPIRED);
        expect(expired.events[0]!.lock!.owner).toBe("b");
      });
    });

    describe("LeaseService", () => {
      it("grants, reports time to live with keys and locks, lists, renews and revokes", async () => {
        const p = fresh();
        const granted = await leases.grant({ ttl: ms(5000) });
        const id = granted.leaseId;
        expect(id).toBeGreaterThan(0n);
        expect(granted.ttl).toMatchObject({ seconds: 5n, nanos: 0 });
        await kv.put({ key: `${p}/b`, value: enc("1"), leaseId: id });
        await kv.put({ key: `${p}/a`, value: enc("2"), leaseId: id });
        await locks.acquire({ name: `${p}-lock`, owner: "o", leaseId: id });
        const ttl = await leases.timeToLive({ leaseId: id, withKeys: true });
        expect(ttl.keys).toEqual([`${p}/a`, `${p}/b`]);
        expect(ttl.locks).toEqual([`${p}-lock`]);
        expect(ttl.grantedTtl!.seconds).toBe(5n);
        expect(Number(ttl.ttlRemaining!.seconds)).toBeGreaterThanOrEqual(3);
        expect((await leases.list({})).leases.map((l) => l.leaseId)).toContain(id);
        const renewed = await leases.renew({ leaseId: id });
        expect(renewed.ttl!.seconds).toBe(5n);
        const got = await kv.get({ key: `${p}/a` });
        expect(got.kv!.leaseId).toBe(id);
        expect(got.kv!.expireTime).toBeDefined();

        const reader = await watchLocks("");
        const revoked = await leases.revoke({ leaseId: id });
        expect(revoked.found).toBe(true);
        const m = await reader.nextEvents();
        expect(m.header!.revision).toBe(revoked.header!.revision);
        expect(m.events.map((e) => [e.kind, e.kv!.key])).toEqual([
          [EventKind.EXPIRE, `${p}/a`],
          [EventKind.EXPIRE, `${p}/b`],
          [EventKind.LOCK_EXPIRED, `/locks/${p}-lock`],
        ]);
        expect((await kv.get({ key: `${p}/a` })).kv).toBeUndefined();
        expect((await locks.describe({ name: `${p}-lock` })).held).toBe(false);
        await expectError(leases.timeToLive({ leaseId: id }), Code.NotFound, "LEASE_NOT_FOUND");
        expect((await leases.revoke({ leaseId: id })).found).toBe(false);
        expect((await leases.renew({ leaseId: id })).ttl).toMatchObject({ seconds: 0n, nanos: 0 });
      });

      it("an expired lease deletes its keys with EXPIRE events and frees its locks", async () => {
        const p = fresh();
        const { leaseId } = await leases.grant({ ttl: ms(150) });
        await kv.put({ key: `${p}/k`, value: enc("v"), leaseId });
        await locks.acquire({ name: `${p}-lock`, owner: "o", leaseId });
        const reader = await watchLocks("");
        const m = await reader.nextEvents(3000);
        expect(m.events.map((e) => e.kind)).toEqual([EventKind.EXPIRE, EventKind.LOCK_EXPIRED]);
        expect((await kv.get({ key: `${p}/k` })).kv).toBeUndefined();
        const other = await locks.acquire({ name: `${p}-lock`, owner: "other", ttl: ms(1000) });
        expect(other.acquired).toBe(true);
      });

      it("KeepAlive renews many leases over one stream; unknown leases answer ttl 0", async () => {
        const a = (await leases.grant({ ttl: ms(300) })).leaseId;
        const b = (await leases.grant({ ttl: ms(300) })).leaseId;
        async function* pings() {
          for (let i = 0; i < 4; i++) {
            yield { leaseId: a };
            yield { leaseId: b };
            await sleep(150);
          }
          yield { leaseId: 424242n };
        }
        const answers: [bigint, number][] = [];
        for await (const res of leases.keepAlive(pings())) {
          answers.push([res.leaseId, Number(res.ttl!.seconds) * 1000 + res.ttl!.nanos / 1e6]);
        }
        expect(answers).toHaveLength(9);
        expect(answers.slice(0, 8).every(([, ttlMs]) => ttlMs === 300)).toBe(true);
        expect(answers[8]).toEqual([424242n, 0]);
        // Renewed past its first TTL: both leases are still alive.
        expect((await leases.timeToLive({ leaseId: a })).leaseId).toBe(a);
        expect((await leases.timeToLive({ leaseId: b })).leaseId).toBe(b);
      });

      it("grants a requested id once; a live one is ABORTED LEASE_EXISTS", async () => {
        const id = BigInt(1_000_000 + Math.floor(Math.random() * 1_000_000));
        expect((await leases.grant({ ttl: ms(5000), leaseId: id })).leaseId).toBe(id);
        await expectError(
          leases.grant({ ttl: ms(5000), leaseId: id }),
          Code.Aborted,
          "LEASE_EXISTS",
        );
        await leases.revoke({ leaseId: id });
      });

      it("refuses a missing or bad TTL and a key put on a revoked lease", async () => {
        await expectError(leases.grant({}), Code.InvalidArgument, "INVALID_TTL");
        await expectError(leases.grant({ ttl: ms(5) }), Code.InvalidArgument, "INVALID_TTL");
        await expectError(
          leases.grant({ ttl: ms(1000), leaseId: -3n }),
          Code.InvalidArgument,
          "INVALID_ARGUMENT",
        );
        const { leaseId } = await leases.grant({ ttl: ms(5000) });
        await leases.revoke({ leaseId });
        await expectError(
          kv.put({ key: `${fresh()}/k`, value: enc("v"), leaseId }),
          Code.NotFound,
          "LEASE_NOT_FOUND",
        );
      });
    });
  });
}
