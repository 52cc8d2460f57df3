/**
 * Redlock over three real redis-server lock nodes, with the Redis state
 * backend: the lock contract; minority and majority node loss; the delayed
 * vote of a node restarted empty; a holder frozen with SIGSTOP; a contended
 * workload over two replicas with node kills, judged by a safety checker;
 * and a negative control proving that checker can fail.
 *
 * Two node sets: `durable` nodes fsync every write (they vote at once, even
 * after a restart), `volatile` nodes keep nothing (after a restart they get
 * no vote for LATCHKEY_MAX_LOCK_TTL_MS, 2 s here).
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { performance } from "node:perf_hooks";
import { createInterface } from "node:readline";
import { type Client, Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { ErrorInfoSchema } from "../../src/gen/google/rpc/error_details_pb.js";
import { KvService } from "../../src/gen/latchkey/v1/kv_pb.js";
import { LockService } from "../../src/gen/latchkey/v1/lock_pb.js";
import { redlockKeys } from "../../src/lock/redlock-scripts.js";
import { describeLockContract } from "../contract/lock.contract.js";
import { type Clients, connectClients } from "../support/clients.js";
import { expectError } from "../support/errors.js";
import { checkLockSafety, type RecordedGrant } from "../support/lock-checker.js";
import { type LockNodeSet, startLockNodes } from "../support/lock-nodes.js";
import { startTestServer, type TestServer, uniquePrefix } from "../support/test-server.js";

const MAX_LOCK_TTL_MS = 2000;
const redisUrl = inject("redisUrl");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const dur = (ms: number) => ({ seconds: BigInt(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1e6 });
const epochMs = (t: { seconds: bigint; nanos: number }) => Number(t.seconds) * 1000 + t.nanos / 1e6;
const unique = (p: string) => `${p}-${randomBytes(4).toString("hex")}`;
const enc = (s: string) => new TextEncoder().encode(s);

let durable: LockNodeSet;
let volatile: LockNodeSet;

beforeAll(async () => {
  // The volatile nodes start now so that they have been up for the vote delay when first used.
  [durable, volatile] = await Promise.all([
    startLockNodes(3, { persist: true }),
    startLockNodes(3),
  ]);
});
afterAll(async () => {
  await Promise.all([durable?.stop(), volatile?.stop()]);
});

describeLockContract("redis state, 3 durable Redlock nodes", {
  // A node timeout above the 50 ms default: the suite shares two cores with
  // the rest of the test run, and a stalled event loop must not read as a lost node.
  start: (env) =>
    startTestServer({
      backend: "redis",
      redisUrl,
      env: { ...env, ...durable.env(), LATCHKEY_LOCK_NODE_TIMEOUT_MS: "250" },
    }),
});

interface Replica {
  readonly server: TestServer;
  readonly clients: Clients;
  readonly locks: Client<typeof LockService>;
  readonly kv: Client<typeof KvService>;
  readonly prefix: string;
  close(): Promise<void>;
}

async function replica(
  nodes: LockNodeSet,
  env: Record<string, string> = {},
  keyPrefix = uniquePrefix(),
): Promise<Replica> {
  const server = await startTestServer({
    backend: "redis",
    redisUrl,
    keyPrefix,
    env: { LATCHKEY_MAX_LOCK_TTL_MS: String(MAX_LOCK_TTL_MS), ...nodes.env(), ...env },
  });
  const clients = connectClients(server.baseUrl, "grpc");
  return {
    server,
    clients,
    locks: clients.client(LockService),
    kv: clients.client(KvService),
    prefix: keyPrefix,
    async close() {
      clients.close();
      await server.close();
    },
  };
}

const reasonOf = (error: unknown) =>
  error instanceof ConnectError
    ? (error.findDetails(ErrorInfoSchema)[0]?.reason ?? Code[error.code])
    : String(error);

/** One try-lock; the grant as the checker wants it, or undefined when not acquired. */
async function tryGrant(
  locks: Client<typeof LockService>,
  name: string,
  owner: string,
  ttlMs: number,
  waitMs = 0,
): Promise<RecordedGrant | undefined> {
  const callStart = Date.now();
  const res = await locks.acquire({ name, owner, ttl: dur(ttlMs), waitTimeout: dur(waitMs) });
  if (!res.acquired) return undefined;
  return {
    name,
    owner,
    token: Number(res.lock!.fencingToken),
    callStart,
    grantedAt: Date.now(),
    expireAt: epochMs(res.lock!.expireTime!),
    grantRevision: Number(res.header!.revision),
  };
}

/** Try-locks every 25 ms until granted; counts the NO_QUORUM and `held` answers on the way. */
async function acquireUntilGranted(
  locks: Client<typeof LockService>,
  name: string,
  owner: string,
  ttlMs: number,
  timeoutMs: number,
): Promise<{ grant: RecordedGrant; noQuorum: number; held: number }> {
  const deadline = Date.now() + timeoutMs;
  let noQuorum = 0;
  let held = 0;
  for (;;) {
    try {
      const grant = await tryGrant(locks, name, owner, ttlMs);
      if (grant) return { grant, noQuorum, held };
      held++;
    } catch (error) {
      if (reasonOf(error) !== "NO_QUORUM") throw error;
      noQuorum++;
    }
    if (Date.now() > deadline) {
      throw new Error(`not granted in ${timeoutMs} ms (${noQuorum} NO_QUORUM, ${held} held)`);
    }
    await sleep(25);
  }
}

/** Waits until a quorum of the server's lock nodes votes (a throwaway lock is granted). */
async function waitForQuorum(locks: Client<typeof LockService>, timeoutMs: number): Promise<void> {
  const name = unique("probe");
  const { grant } = await acquireUntilGranted(locks, name, "probe", 1000, timeoutMs);
  await locks.release({ name, fencingToken: BigInt(grant.token) });
}

describe("Redlock over 3 lock nodes", () => {
  it("1 of 3 nodes down: granted; 2 down: UNAVAILABLE NO_QUORUM at once, never a grant; back: grants resume", async () => {
    const r = await replica(durable);
    try {
      const [, b, c] = durable.nodes;
      const name = unique("minority");
      await c!.kill();
      const first = await tryGrant(r.locks, name, "a", 1000);
      expect(first).toBeDefined();
      await r.locks.release({ name, fencingToken: BigInt(first!.token) });

      await b!.kill();
      const refused = unique("majority");
      const elapsed: number[] = [];
      for (let i = 0; i < 5; i++) {
        const began = performance.now();
        const meta = await expectError(
          r.locks.acquire({ name: refused, owner: "b", ttl: dur(1000), waitTimeout: dur(i * 100) }),
          Code.Unavailable,
          "NO_QUORUM",
        );
        elapsed.push(performance.now() - began);
        expect(meta).toMatchObject({ quorum: "2" });
      }
      console.log(
        `[redlock] 2 of 3 nodes down: NO_QUORUM in ${elapsed.map((e) => e.toFixed(1)).join(", ")} ms`,
      );
      expect(Math.max(...elapsed)).toBeLessThan(500);
      expect((await r.locks.describe({ name: refused })).held).toBe(false);
      const keys = redlockKeys(r.prefix, "default", refused);
      expect(await durable.inspect(0).exists(keys.hold)).toBe(0);

      await Promise.all([b!.restart(), c!.restart()]);
      const { grant: back } = await acquireUntilGranted(r.locks, name, "c", 1000, 5000);
      expect(back.token).toBeGreaterThan(first!.token);
    } finally {
      await r.close();
    }
  });

  it("a node restarted empty gets no vote until the longest lock TTL has passed: a holder on {A,B} is not doubled by {B,C}", async () => {
    const r = await replica(volatile);
    try {
      await waitForQuorum(r.locks, 8000);
      const [, b, c] = volatile.nodes;
      const name = unique("restarted");
      await c!.kill();
      const x = await tryGrant(r.locks, name, "x", 1500);
      expect(x).toBeDefined();
      // B loses x's hold; B and C come back empty at once.
      await b!.kill();
      const restartedAt = Date.now();
      await Promise.all([b!.restart(), c!.restart()]);
      const { grant: y, noQuorum } = await acquireUntilGranted(r.locks, name, "y", 1000, 8000);
      const report = checkLockSafety([x!, y]);
      console.log(
        `[redlock] restarted empty: y granted ${y.grantedAt - restartedAt} ms after the restart (vote delay ${MAX_LOCK_TTL_MS} ms, ${noQuorum} NO_QUORUM answers before), x valid until +${x!.expireAt - restartedAt} ms; violations: ${report.violations.length}`,
      );
      expect(y.grantedAt).toBeGreaterThanOrEqual(restartedAt + MAX_LOCK_TTL_MS);
      expect(y.grantedAt).toBeGreaterThan(x!.expireAt);
      expect(y.token).toBeGreaterThan(x!.token);
      expect(noQuorum).toBeGreaterThan(0);
      expect(report.violations).toEqual([]);
    } finally {
      await r.close();
    }
  });

  it("negative control: with LATCHKEY_LOCK_UNSAFE_IMMEDIATE_VOTE the same restart lets a second owner in, and the checker reports the overlap", async () => {
    const r = await replica(volatile, { LATCHKEY_LOCK_UNSAFE_IMMEDIATE_VOTE: "true" });
    try {
      await waitForQuorum(r.locks, 5000);
      const [, b, c] = volatile.nodes;
      const name = unique("unsafe");
      await c!.kill();
      const x = await tryGrant(r.locks, name, "x", 1500);
      expect(x).toBeDefined();
      await b!.kill();
      await Promise.all([b!.restart(), c!.restart()]);
      const { grant: y } = await acquireUntilGranted(r.locks, name, "y", 1000, 1000);
      const report = checkLockSafety([x!, y]);
      console.log(
        `[redlock] negative control (unsafe immediate vote): violations found: ${report.violations.length} (${report.violations.map((v) => `${v.kind}: ${v.detail}`).join("; ")})`,
      );
      expect(report.violations.some((v) => v.kind === "overlap")).toBe(true);
      // The store's fencing still refuses the stale holder.
      await expectError(
        r.kv.put({
          key: unique("k"),
          value: enc("x"),
          fence: { lockName: name, token: BigInt(x!.token) },
        }),
        Code.Aborted,
        "FENCE_STALE",
      );
    } finally {
      await r.close();
    }
  });

  it("a holder frozen past its TTL (SIGSTOP) writes nothing after another owner took the lock: FENCE_STALE", async () => {
    const r = await replica(durable);
    const name = unique("frozen");
    const key = unique("frozen-data");
    const child = spawn(
      process.execPath,
      [
        "--import",
        "tsx",
        new URL("../support/lock-holder-child.ts", import.meta.url).pathname,
        r.server.baseUrl,
        name,
        key,
        "400",
      ],
      { stdio: ["pipe", "pipe", "inherit"] },
    );
    const exited = new Promise((resolve) => child.once("exit", resolve));
    type Line = {
      event: string;
      token?: number;
      expireAt?: number;
      sentAt?: number;
      accepted?: boolean;
      revision?: number;
      reason?: string;
    };
    const lines: Line[] = [];
    createInterface({ input: child.stdout! }).on("line", (l) => lines.push(JSON.parse(l)));
    const waitFor = async (ok: () => boolean, what: string, ms = 10_000) => {
      const deadline = Date.now() + ms;
      while (!ok()) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
        await sleep(10);
      }
    };
    const writes = () => lines.filter((l) => l.event === "write");
    try {
      await waitFor(() => writes().filter((w) => w.accepted).length >= 2, "the child's writes");
      const held = lines.find((l) => l.event === "acquired")!;
      child.kill("SIGSTOP");
      await sleep(Math.max(0, held.expireAt! - Date.now()) + 50);
      const { grant: other } = await acquireUntilGranted(r.locks, name, "other", 1500, 3000);
      expect(other.token).toBeGreaterThan(held.token!);
      await r.kv.put({
        key,
        value: enc("other"),
        fence: { lockName: name, token: BigInt(other.token) },
      });
      child.kill("SIGCONT");
      await waitFor(
        () => writes().filter((w) => w.sentAt! > other.grantedAt).length >= 5,
        "writes after resume",
      );
      child.stdin!.end("stop\n");
      await exited;
      const after = writes().filter((w) => w.sentAt! > other.grantedAt);
      const before = writes().filter((w) => w.accepted);
      console.log(
        `[redlock] frozen holder: ${before.length} writes accepted before the freeze (all below revision ${other.grantRevision}), ${after.length} after it, refused: ${after.filter((w) => w.reason === "FENCE_STALE").length} FENCE_STALE`,
      );
      expect(after.every((w) => !w.accepted && w.reason === "FENCE_STALE")).toBe(true);
      expect(before.every((w) => w.revision! < other.grantRevision)).toBe(true);
      const final = await r.kv.get({ key });
      expect(new TextDecoder().decode(final.kv!.value)).toBe("other");
    } finally {
      child.kill("SIGCONT");
      child.kill("SIGKILL");
      await r.close();
    }
  });

  it("contended workload over 2 replicas with minority node kills and empty restarts: no overlap, tokens increase, no stale write accepted", async () => {
    const WORKLOAD_MS = 15_000;
    const CLIENTS = 16;
    const names = Array.from({ length: 10 }, () => unique("hot"));
    const prefix = uniquePrefix();
    const replicas = [await replica(volatile, {}, prefix), await replica(volatile, {}, prefix)];
    await waitForQuorum(replicas[0]!.locks, 8000);
    const grants: RecordedGrant[] = [];
    const refusals = new Map<string, number>();
    let notAcquired = 0;
    const count = (reason: string) => refusals.set(reason, (refusals.get(reason) ?? 0) + 1);
    const end = Date.now() + WORKLOAD_MS;
    const pick = <T>(xs: readonly T[]) => xs[Math.floor(Math.random() * xs.length)]!;

    const client = async (i: number) => {
      const via = replicas[i % replicas.length]!;
      const clients = connectClients(via.server.baseUrl, "grpc");
      const locks = clients.client(LockService);
      const kv = clients.client(KvService);
      const owner = `client-${i}`;
      try {
        while (Date.now() < end) {
          const name = pick(names);
          let grant: RecordedGrant | undefined;
          try {
            const ttl = 300 + Math.floor(Math.random() * 500);
            grant = await tryGrant(locks, name, owner, ttl, Math.random() < 0.5 ? 0 : 150);
          } catch (error) {
            count(reasonOf(error));
            await sleep(5 + Math.random() * 20);
            continue;
          }
          if (!grant) {
            notAcquired++;
            await sleep(Math.random() * 4);
            continue;
          }
          grants.push(grant);
          try {
            const put = await kv.put({
              key: `data/${name}`,
              value: enc(`${owner}:${grant.token}`),
              fence: { lockName: name, token: BigInt(grant.token) },
            });
            grant.write = { accepted: true, revision: Number(put.header!.revision) };
          } catch (error) {
            grant.write = { accepted: false, reason: reasonOf(error) };
          }
          await sleep(Math.random() * 2);
          grant.releaseAt = Date.now();
          await locks
            .release({ name, fencingToken: BigInt(grant.token) })
            .catch((error: unknown) => count(`release ${reasonOf(error)}`));
        }
      } finally {
        clients.close();
      }
    };

    // One node at a time: killed, restarted empty after a moment, and only
    // killed again once the last restarted node votes again (a minority out).
    const kills: string[] = [];
    const chaos = async () => {
      await sleep(1000);
      while (Date.now() < end - 1500) {
        const i = Math.floor(Math.random() * 3);
        await volatile.nodes[i]!.kill();
        kills.push(`node ${i} at +${WORKLOAD_MS - (end - Date.now())} ms`);
        await sleep(200 + Math.random() * 400);
        await volatile.nodes[i]!.restart();
        // The vote comes back MAX_LOCK_TTL_MS after the restart, plus up to 1 s
        // of uptime rounding and 1 s until the next check.
        await sleep(MAX_LOCK_TTL_MS + 3000);
      }
    };

    try {
      await Promise.all([chaos(), ...Array.from({ length: CLIENTS }, (_, i) => client(i))]);
    } finally {
      await Promise.all(replicas.map((r) => r.close()));
    }
    const report = checkLockSafety(grants);
    console.log(
      `[redlock] workload: ${CLIENTS} clients over 2 replicas, ${names.length} names, ${WORKLOAD_MS} ms, node kills: ${kills.join(", ")}`,
    );
    console.log(
      `[redlock] acquisitions checked: ${report.grantsChecked} (late grants ${report.lateGrants}), not acquired (contention): ${notAcquired}, refused: ${JSON.stringify(Object.fromEntries(refusals))}`,
    );
    console.log(
      `[redlock] fenced writes accepted: ${report.writesAccepted}, refused FENCE_STALE: ${report.writesRefusedStale}; violations found: ${report.violations.length}`,
    );
    for (const v of report.violations.slice(0, 10))
      console.log(`[redlock] ${v.kind} ${v.name}: ${v.detail}`);
    expect(kills.length).toBeGreaterThan(0);
    expect(report.grantsChecked).toBeGreaterThanOrEqual(1000);
    expect(report.violations).toEqual([]);
  }, 60_000);
});
