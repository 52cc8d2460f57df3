/**
 * Property test of the watch guarantees: a seeded random workload of puts,
 * deletes, prefix deletes, Txns and TTL expiries runs while watchers connect
 * at random revisions, disconnect and resume (on the memory backend, and on
 * two service replicas sharing one Redis, switching replica at each resume).
 * Every watcher's deliveries are checked against the reference history and
 * the reference against the acknowledged writes (test/support/watch-history.ts).
 */
import { type Client, ConnectError } from "@connectrpc/connect";
import { afterEach, describe, expect, inject, it } from "vitest";
import { ErrorInfoSchema } from "../../src/gen/google/rpc/error_details_pb.js";
import { KvService } from "../../src/gen/latchkey/v1/kv_pb.js";
import { WatchService } from "../../src/gen/latchkey/v1/watch_pb.js";
import { connectClients } from "../support/clients.js";
import { startRedis } from "../support/redis-server.js";
import { startTestServer, type TestServer, uniquePrefix } from "../support/test-server.js";
import {
  buildReference,
  checkAcknowledged,
  checkWatcher,
  type Received,
  toDelivered,
  type WatcherLog,
  type WatcherSpec,
} from "../support/watch-history.js";

const enc = (s: string) => new TextEncoder().encode(s);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** mulberry32: a small seeded PRNG, so a failing seed can be replayed. */
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

interface Replica {
  kv: Client<typeof KvService>;
  watch: Client<typeof WatchService>;
  close(): void;
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function replicasOf(servers: TestServer[]): Promise<Replica[]> {
  return servers.map((s) => {
    const clients = connectClients(s.baseUrl, "grpc");
    cleanups.push(() => clients.close());
    return {
      kv: clients.client(KvService),
      watch: clients.client(WatchService),
      close: () => clients.close(),
    };
  });
}

/** Reads one session of a watch: up to `maxMessages`, until `until` is covered, or an error. */
async function session(
  replica: Replica,
  spec: WatcherSpec,
  start: bigint,
  maxMessages: number,
  until: bigint | undefined,
  stopWhen: () => boolean = () => false,
): Promise<{ received: Received[]; resumeAt: bigint | undefined }> {
  const abort = new AbortController();
  const received: Received[] = [];
  let resumeAt: bigint | undefined;
  const stream = replica.watch.watch(
    {
      key: spec.isPrefix ? "" : spec.key,
      prefix: spec.isPrefix ? spec.key : "",
      startRevision: start,
      progressNotify: true,
    },
    { signal: abort.signal, timeoutMs: 20_000 },
  );
  try {
    for await (const message of stream) {
      received.push(toDelivered(message));
      if (until !== undefined && message.header!.revision >= until) break;
      if (until === undefined && received.length >= maxMessages) break;
      // Progress messages arrive every interval, so this is checked often.
      if (stopWhen()) break;
    }
  } catch (error) {
    const ce = ConnectError.from(error);
    const resume = ce.findDetails(ErrorInfoSchema)[0]?.metadata.resume_revision;
    if (resume === undefined) throw error;
    resumeAt = BigInt(resume);
  } finally {
    abort.abort();
  }
  return { received, resumeAt };
}

/** Runs `log`'s watcher from `from` to `finalRevision`, resuming after each resumable error. */
async function finish(
  pickReplica: () => Replica,
  log: WatcherLog,
  from: bigint,
  finalRevision: bigint,
): Promise<void> {
  for (;;) {
    const s = await session(pickReplica(), log.spec, from, Number.MAX_SAFE_INTEGER, finalRevision);
    log.sessions.push({ start: from, received: s.received });
    if (s.resumeAt === undefined) return;
    from = s.resumeAt;
  }
}

/**
 * Checks every watcher log against the reference (a full watch of the tenant
 * from `first`), and the reference against the acknowledged writes and the
 * final state of `prefix`.
 */
async function checkAll(
  replica: Replica,
  first: bigint,
  finalRevision: bigint,
  prefix: string,
  acknowledged: Acknowledged[],
  logs: readonly WatcherLog[],
): Promise<string[]> {
  const all = await session(
    replica,
    { key: "", isPrefix: true },
    first,
    Number.MAX_SAFE_INTEGER,
    finalRevision,
  );
  const { reference, problems } = buildReference(all.received, first, finalRevision);
  const finalState = new Map<string, string>();
  for (const kv of (await replica.kv.range({ prefix })).kvs)
    finalState.set(kv.key, new TextDecoder().decode(kv.value));
  problems.push(...checkAcknowledged(reference, acknowledged, finalState));
  for (const log of logs) problems.push(...checkWatcher(log, reference, finalRevision));
  return problems;
}

type Acknowledged = { revision: bigint; puts: { key: string; value: string }[]; deletes: string[] };

interface WorkloadResult {
  problems: string[];
  acknowledgedWrites: number;
  deliveredMessages: number;
  sessions: number;
}

/** Runs the workload on `replicas` and checks every guarantee. */
async function runWorkload(
  replicas: Replica[],
  seed: number,
  opts: { writers: number; opsPerWriter: number; watchers: number },
): Promise<WorkloadResult> {
  const random = rng(seed);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  const p = "prop/";
  const keys = ["a", "b", "c", "d/1", "d/2", "d/3", "e"].map((k) => `${p}${k}`);
  const acknowledged: {
    revision: bigint;
    puts: { key: string; value: string }[];
    deletes: string[];
  }[] = [];
  const startRevision = (await replicas[0]!.kv.get({ key: `${p}probe` })).header!.revision + 1n;

  let writing = true;
  const writers = Array.from({ length: opts.writers }, async (_, w) => {
    for (let i = 0; i < opts.opsPerWriter; i++) {
      const r = pick(replicas);
      const roll = random();
      const value = `w${w}-${i}`;
      if (roll < 0.45) {
        const key = pick(keys);
        const ttl =
          random() < 0.3
            ? { seconds: 0n, nanos: (20 + Math.floor(random() * 60)) * 1_000_000 }
            : undefined;
        const res = await r.kv.put({ key, value: enc(value), ttl });
        acknowledged.push({ revision: res.header!.revision, puts: [{ key, value }], deletes: [] });
      } else if (roll < 0.6) {
        const key = pick(keys);
        const res = await r.kv.delete({ key, prevKv: true });
        if (res.deleted > 0n)
          acknowledged.push({ revision: res.header!.revision, puts: [], deletes: [key] });
      } else if (roll < 0.67) {
        const res = await r.kv.delete({ prefix: `${p}d/`, prevKv: true });
        if (res.deleted > 0n) {
          acknowledged.push({
            revision: res.header!.revision,
            puts: [],
            deletes: res.prevKvs.map((kv) => kv.key),
          });
        }
      } else {
        const chosen = [...new Set([pick(keys), pick(keys), pick(keys)])];
        const res = await r.kv.txn({
          success: chosen.map((key) => ({
            request: { case: "put" as const, value: { key, value: enc(value) } },
          })),
        });
        acknowledged.push({
          revision: res.header!.revision,
          puts: chosen.map((key) => ({ key, value })),
          deletes: [],
        });
      }
      if (random() < 0.2) await sleep(Math.floor(random() * 5));
    }
  });

  const specs: WatcherSpec[] = [
    { key: "", isPrefix: true },
    { key: p, isPrefix: true },
    { key: `${p}d/`, isPrefix: true },
    { key: `${p}a`, isPrefix: false },
    { key: `${p}e`, isPrefix: false },
  ];
  const logs: WatcherLog[] = [];
  const watchers = Array.from({ length: opts.watchers }, async (_, i) => {
    const spec = specs[i % specs.length]!;
    const log: WatcherLog = { spec, sessions: [] };
    logs.push(log);
    // Join at a random revision in the past (or "now").
    const now = (await replicas[0]!.kv.get({ key: `${p}probe` })).header!.revision;
    let start =
      random() < 0.3
        ? now + 1n
        : startRevision + BigInt(Math.floor(random() * Number(now - startRevision + 1n)));
    while (writing) {
      const s = await session(pick(replicas), spec, start, 1 + Math.floor(random() * 8), undefined);
      log.sessions.push({ start, received: s.received });
      const last = s.received[s.received.length - 1];
      start = s.resumeAt ?? (last ? last.revision + 1n : start);
    }
    return { log, start };
  });

  await Promise.all(writers);
  writing = false;
  const tails = await Promise.all(watchers);

  // Let every TTL run out and be swept: wait until the revision stops moving.
  let finalRevision = 0n;
  for (let stable = 0; stable < 3; ) {
    await sleep(150);
    const now = (await replicas[0]!.kv.get({ key: `${p}probe` })).header!.revision;
    stable = now === finalRevision ? stable + 1 : 0;
    finalRevision = now;
  }

  // Each watcher's last session runs to the final revision, on a random replica.
  for (const { log, start } of tails) await finish(() => pick(replicas), log, start, finalRevision);
  const problems = await checkAll(
    replicas[0]!,
    startRevision,
    finalRevision,
    p,
    acknowledged,
    logs,
  );
  return {
    problems,
    acknowledgedWrites: acknowledged.length,
    deliveredMessages: logs.reduce(
      (n, l) => n + l.sessions.reduce((m, s) => m + s.received.length, 0),
      0,
    ),
    sessions: logs.reduce((n, l) => n + l.sessions.length, 0),
  };
}

describe("watch guarantees under a random workload", () => {
  const seeds = [1, 2, 3];

  it.each(seeds)("memory backend, seed %i", async (seed) => {
    const server = await startTestServer({
      backend: "memory",
      env: { LATCHKEY_WATCH_PROGRESS_INTERVAL_MS: "50" },
    });
    cleanups.push(() => server.close());
    const result = await runWorkload(await replicasOf([server]), seed, {
      writers: 4,
      opsPerWriter: 60,
      watchers: 10,
    });
    console.log(`memory seed ${seed}:`, { ...result, problems: result.problems.length });
    expect(result.problems).toEqual([]);
    expect(result.acknowledgedWrites).toBeGreaterThan(100);
  });

  it.each(seeds)("two replicas on one Redis, switching at each resume, seed %i", async (seed) => {
    const keyPrefix = uniquePrefix();
    const env = { LATCHKEY_WATCH_PROGRESS_INTERVAL_MS: "50" };
    const servers = await Promise.all(
      [0, 1].map(() =>
        startTestServer({ backend: "redis", redisUrl: inject("redisUrl"), keyPrefix, env }),
      ),
    );
    for (const s of servers) cleanups.push(() => s.close());
    const result = await runWorkload(await replicasOf(servers), seed, {
      writers: 4,
      opsPerWriter: 60,
      watchers: 10,
    });
    console.log(`redis seed ${seed}:`, { ...result, problems: result.problems.length });
    expect(result.problems).toEqual([]);
  });

  it("the checker catches a gap and a repeat (it can fail)", () => {
    const reference = new Map([
      [1n, [{ kind: 1, key: "k", value: "1", version: 1n, ttl: false }]],
      [2n, [{ kind: 1, key: "k", value: "2", version: 2n, ttl: false }]],
      [3n, [{ kind: 1, key: "k", value: "3", version: 3n, ttl: false }]],
    ]);
    const spec = { key: "k", isPrefix: false };
    const events = (revision: bigint) => ({ revision, events: reference.get(revision)! });
    const progress = (revision: bigint) => ({ revision, events: [] });
    const check = (...sessions: { start: bigint; received: Received[] }[]) =>
      checkWatcher({ spec, sessions }, reference, 3n);
    const gap = check({ start: 1n, received: [events(1n), events(3n)] });
    expect(gap.length).toBeGreaterThan(0);
    const repeat = check(
      { start: 1n, received: [events(1n), events(2n)] },
      { start: 2n, received: [events(2n), events(3n)] },
    );
    expect(repeat.length).toBeGreaterThan(0);
    const early = check({ start: 1n, received: [progress(2n), events(1n)] });
    expect(early.join()).toContain("progress at 2 before");
  });
});

describe("watch across a Redis crash", () => {
  it("watchers get UNAVAILABLE with a resume revision and resume with nothing lost", async () => {
    const redis = await startRedis({ persist: true });
    cleanups.push(() => redis.stop());
    const server = await startTestServer({
      backend: "redis",
      redisUrl: redis.url,
      env: { LATCHKEY_WATCH_PROGRESS_INTERVAL_MS: "50", LATCHKEY_REDIS_COMMAND_TIMEOUT_MS: "300" },
    });
    cleanups.push(() => server.close());
    const [replica] = await replicasOf([server]);
    const spec: WatcherSpec = { key: "crash/", isPrefix: true };
    const acknowledged: {
      revision: bigint;
      puts: { key: string; value: string }[];
      deletes: string[];
    }[] = [];
    const first = (await replica!.kv.put({ key: "crash/a", value: enc("0") })).header!.revision;
    acknowledged.push({ revision: first, puts: [{ key: "crash/a", value: "0" }], deletes: [] });

    const log: WatcherLog = { spec, sessions: [] };
    let stop = false;
    let sawUnavailable = false;
    const watcher = (async () => {
      let start = first;
      while (!stop) {
        try {
          const s = await session(
            replica!,
            spec,
            start,
            Number.MAX_SAFE_INTEGER,
            undefined,
            () => stop,
          );
          log.sessions.push({ start, received: s.received });
          const last = s.received[s.received.length - 1];
          if (s.resumeAt !== undefined) sawUnavailable = true;
          start = s.resumeAt ?? (last ? last.revision + 1n : start);
        } catch {
          // The watch could not even start while Redis was down: try again.
          await sleep(50);
        }
      }
      return start;
    })();
    const writer = (async () => {
      for (let i = 1; i <= 200; i++) {
        try {
          const res = await replica!.kv.put({ key: `crash/${i % 5}`, value: enc(String(i)) });
          acknowledged.push({
            revision: res.header!.revision,
            puts: [{ key: `crash/${i % 5}`, value: String(i) }],
            deletes: [],
          });
        } catch {
          // Refused while Redis is down: not acknowledged, so not expected in the feed.
        }
        await sleep(3);
      }
    })();
    await sleep(150);
    await redis.kill();
    await sleep(300);
    await redis.restart();
    await writer;
    const finalRevision = (await replica!.kv.get({ key: "crash/probe" })).header!.revision;
    stop = true;
    await finish(() => replica!, log, await watcher, finalRevision);
    const problems = await checkAll(replica!, first, finalRevision, "crash/", acknowledged, [log]);
    expect(sawUnavailable).toBe(true);
    expect(problems).toEqual([]);
  });
});
