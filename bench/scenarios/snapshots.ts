/**
 * Execution snapshots: Save and Load throughput and latency for 1 KiB,
 * 64 KiB and 1 MiB JSON states, and the cost of the transparent state
 * compression.
 *
 * Save needs a strictly increasing sequence per execution, so a fixed h2load
 * body cannot drive it: both operations are driven by a Connect-ES gRPC
 * client in the runner's process (pinned to core 1; its own CPU is part of
 * what limits small-state rates, see STACK.md: a Node gRPC client tops out
 * near 6 000 calls/s). Each of the C workers in flight saves its own
 * execution with sequence 1, 2, 3, ... or loads one of a few seeded ones.
 * The service and its Redis are pinned to core 0. States are realistic
 * workflow JSON (a step history with ids and timestamps); those above the
 * 16 KiB threshold are stored brotli-compressed, so Save of 64 KiB and 1 MiB
 * includes the compression and Load the inflation, on the server's core.
 *
 * The compression group measures core/snapshots.ts's encodeState and
 * decodeState in process (one core), next to deflate level 1 (the fastest
 * zlib level) and brotli quality 4 (the next ratio step), on the same
 * states, with the compression ratio in the note.
 */
import { randomBytes } from "node:crypto";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import {
  brotliCompressSync,
  brotliDecompressSync,
  constants,
  deflateRawSync,
  inflateRawSync,
} from "node:zlib";
import { type Client, Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { decodeState, encodeState } from "../../src/core/snapshots.js";
import { SnapshotService } from "../../src/gen/latchkey/v1/snapshot_pb.js";
import { type LatchkeyServer, startLatchkey } from "../lib/latchkey.js";
import { sleep } from "../lib/proc.js";
import { type RedisServer, startRedis } from "../lib/redis.js";
import { summarize } from "../lib/stats.js";
import type { BenchOptions, BenchRow, Scenario } from "../types.js";

export const GROUP = "Snapshots: Save and Load, gRPC unary, server on one core";
export const COMPRESSION_GROUP = "Snapshots: state compression, in process, one core";
const SERVER_CORE = 0;
const SIZES = [
  ["1 KiB", 1024],
  ["64 KiB", 64 * 1024],
  ["1 MiB", 1024 * 1024],
] as const;
const COMPRESSION_SIZES = [
  ["16 KiB", 16 * 1024],
  ["256 KiB", 256 * 1024],
  ["1 MiB", 1024 * 1024],
  ["16 MiB", 16 * 1024 * 1024],
] as const;
const LOAD_EXECUTIONS = 4;
const THRESHOLD = 16 * 1024;

/** A workflow engine's state of `bytes` bytes or a little more: a step history with ids and times. */
export function workflowState(bytes: number): Uint8Array {
  const steps = ["reserve", "charge", "ship", "notify", "approve", "refund"];
  const history: string[] = [];
  let size = 64;
  for (let i = 0; size < bytes; i++) {
    const step = JSON.stringify({
      seq: i,
      at: new Date(1.7e12 + i * 1375).toISOString(),
      step: steps[i % steps.length],
      status: i % 11 === 0 ? "failed" : "completed",
      attempt: 1 + (i % 3),
      input: { sku: `SKU-${(i * 7919) % 99_991}`, qty: i % 10, note: `${steps[(i * 3) % 6]} step` },
      output: i % 5 === 0 ? { token: randomBytes(12).toString("base64url") } : { ok: true },
    });
    size += step.length + 1;
    history.push(step);
  }
  return new TextEncoder().encode(
    `{"workflow":"order-fulfilment","version":7,"history":[${history.join(",")}]}`,
  );
}

interface Cell {
  readonly throughput: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly errors: number;
  /** Error count per gRPC code name. */
  readonly codes: ReadonlyMap<string, number>;
}

/** Runs `op` in `concurrency` loops for `seconds` after a short warm-up. */
async function drive(
  op: (worker: number) => Promise<void>,
  concurrency: number,
  seconds: number,
): Promise<Cell> {
  const samples: number[] = [];
  let errors = 0;
  const codes = new Map<string, number>();
  let measuring = false;
  let stop = false;
  const workers = Array.from({ length: concurrency }, async (_, w) => {
    while (!stop) {
      const started = performance.now();
      try {
        await op(w);
        if (measuring) samples.push(performance.now() - started);
      } catch (error) {
        if (measuring) {
          errors++;
          const code = error instanceof ConnectError ? Code[error.code] : String(error);
          codes.set(code, (codes.get(code) ?? 0) + 1);
        }
      }
    }
  });
  await sleep(Math.min(1000, seconds * 200));
  measuring = true;
  const started = performance.now();
  await sleep(seconds * 1000);
  measuring = false;
  const elapsed = (performance.now() - started) / 1000;
  stop = true;
  await Promise.all(workers);
  const s = summarize(samples);
  return { throughput: samples.length / elapsed, p50Ms: s.p50, p99Ms: s.p99, errors, codes };
}

/** Save and Load as one subject serves them. */
interface Driver {
  save(executionId: string, sequence: number, state: Uint8Array): Promise<void>;
  load(executionId: string): Promise<Uint8Array>;
  close(): void;
}

interface Subject {
  readonly name: string;
  /** Latchkey's Redis, to report how large a state is stored. */
  readonly redis: RedisServer | undefined;
  readonly levels: readonly number[];
  open(): Driver;
}

const RAW_PEER = "ioredis → Redis (raw)";

/**
 * The raw peer's Save: what a hand-rolled store must do at least, a
 * sequence check and the write in one script (no compression, no metadata,
 * no changefeed, no gRPC).
 */
const RAW_SAVE_LUA = `
local stored = tonumber(redis.call('HGET', KEYS[1], 'q') or '0')
if tonumber(ARGV[1]) <= stored then
  return redis.error_reply('SEQUENCE_STALE')
end
redis.call('HSET', KEYS[1], 'q', ARGV[1], 'v', ARGV[2])
return 1`;

function latchkeyDriver(server: LatchkeyServer): Driver {
  // Node's default client session memory (10 MB) refuses new streams
  // (ENHANCE_YOUR_CALM) once 16 x 1 MiB requests are queued on one connection.
  const sessions = new Http2SessionManager(server.url, undefined, { maxSessionMemory: 256 });
  const client: Client<typeof SnapshotService> = createClient(
    SnapshotService,
    createGrpcTransport({ baseUrl: server.url, sessionManager: sessions }),
  );
  return {
    async save(executionId, sequence, state) {
      await client.save({
        executionId,
        sequence: BigInt(sequence),
        state,
        contentType: "application/json",
      });
    },
    async load(executionId) {
      return (await client.load({ executionId })).snapshot!.state;
    },
    close: () => sessions.abort(),
  };
}

/** ioredis from the runner straight to the same Redis, on one connection as Latchkey uses. */
function rawDriver(redis: RedisServer): Driver {
  const client = redis.client.duplicate();
  client.defineCommand("rawSave", { numberOfKeys: 1, lua: RAW_SAVE_LUA });
  const key = (id: string) => `bench:raw:{${id}}`;
  const saveScript = client as unknown as {
    rawSave(key: string, sequence: string, state: Buffer): Promise<number>;
  };
  return {
    async save(executionId, sequence, state) {
      // ioredis sends only a Buffer as bytes (another Uint8Array as its toString()).
      const bytes = Buffer.from(state.buffer, state.byteOffset, state.byteLength);
      await saveScript.rawSave(key(executionId), String(sequence), bytes);
    },
    async load(executionId) {
      const state = await client.hgetBuffer(key(executionId), "v");
      if (state === null) throw new Error(`raw: ${executionId} not found`);
      return state;
    },
    close: () => client.disconnect(),
  };
}

async function measureService(options: BenchOptions): Promise<BenchRow[]> {
  const logDir = join(options.workDir, "snapshots");
  mkdirSync(logDir, { recursive: true });
  const redis = await startRedis({ core: SERVER_CORE, logDir });
  const servers: LatchkeyServer[] = [];
  try {
    const onRedis = await startLatchkey({
      core: SERVER_CORE,
      redisUrl: redis.url,
      logDir,
      log: options.log,
      label: "snapshots-redis",
    });
    servers.push(onRedis);
    const inMemory = await startLatchkey({
      core: SERVER_CORE,
      logDir,
      log: options.log,
      label: "snapshots-memory",
    });
    servers.push(inMemory);
    const subjects: Subject[] = [
      {
        name: "latchkey (redis)",
        redis,
        levels: [1, 16],
        open: () => latchkeyDriver(onRedis),
      },
      {
        name: "latchkey (memory)",
        redis: undefined,
        levels: [16],
        open: () => latchkeyDriver(inMemory),
      },
      { name: RAW_PEER, redis: undefined, levels: [1, 16], open: () => rawDriver(redis) },
    ];
    const states = new Map(SIZES.map(([label, bytes]) => [label, workflowState(bytes)]));
    const cellSeconds = Math.max(2, Math.round(options.durationSeconds / 2));
    const rounds = options.rounds ?? 1;
    const results = new Map<string, Cell[]>();
    const notes = new Map<string, string>();
    const record = (key: string, cell: Cell) => {
      const list = results.get(key) ?? [];
      list.push(cell);
      results.set(key, list);
    };

    for (let round = 0; round < rounds; round++) {
      const order = round % 2 === 0 ? subjects : [...subjects].reverse();
      for (const subject of order) {
        const driver = subject.open();
        try {
          for (const [label, bytes] of SIZES) {
            const state = states.get(label)!;
            for (const concurrency of subject.levels) {
              const tag = `${round}-${concurrency}-${randomBytes(3).toString("hex")}`;
              const sequences = new Array<number>(concurrency).fill(0);
              const save = await drive(
                async (w) => {
                  sequences[w]! += 1;
                  await driver.save(
                    `bench-save-${label.replace(" ", "")}-${tag}-${w}`,
                    sequences[w]!,
                    state,
                  );
                },
                concurrency,
                cellSeconds,
              );
              record(`${subject.name}|Save ${label}|${concurrency}`, save);

              const ids = Array.from(
                { length: LOAD_EXECUTIONS },
                (_, i) => `bench-load-${label.replace(" ", "")}-${tag}-${i}`,
              );
              for (const id of ids) await driver.save(id, 1, state);
              const check = await driver.load(ids[0]!);
              if (Buffer.compare(check, state) !== 0) {
                throw new Error(`${subject.name} Load ${label}: the state came back different`);
              }
              const load = await drive(
                async (w) => {
                  await driver.load(ids[w % LOAD_EXECUTIONS]!);
                },
                concurrency,
                cellSeconds,
              );
              record(`${subject.name}|Load ${label}|${concurrency}`, load);
              if (subject.redis && round === 0 && concurrency === 1) {
                // The service's default key prefix "lk", tenant "default" (auth off).
                const stored = await subject.redis.client.hstrlen(
                  `lk:{default}:snap:s:${ids[0]}`,
                  "v",
                );
                notes.set(
                  label,
                  bytes > THRESHOLD
                    ? `stored in Redis as ${(stored / 1024).toFixed(1)} KiB (brotli, ${(bytes / stored).toFixed(1)}×)`
                    : `stored as sent (${stored} B, below the 16 KiB threshold)`,
                );
              }
              options.log(
                `${subject.name} ${label} c=${concurrency}: save ${save.throughput.toFixed(0)}/s p99 ${save.p99Ms.toFixed(2)} ms, load ${load.throughput.toFixed(0)}/s p99 ${load.p99Ms.toFixed(2)} ms`,
              );
            }
          }
        } finally {
          driver.close();
        }
      }
    }

    const rows: BenchRow[] = [];
    for (const [key, cells] of results) {
      const [subject, scenario, concurrency] = key.split("|") as [string, string, string];
      const errors = cells.reduce((n, c) => n + c.errors, 0);
      const codes = new Map<string, number>();
      for (const c of cells) for (const [k, v] of c.codes) codes.set(k, (codes.get(k) ?? 0) + v);
      const size = scenario.split(" ").slice(1).join(" ");
      const note = [
        cells.length > 1
          ? `best of ${cells.length} rounds: ${cells.map((c) => c.throughput.toFixed(0)).join(" / ")}`
          : "",
        scenario.startsWith("Save") && subject !== RAW_PEER ? (notes.get(size) ?? "") : "",
        errors > 0
          ? `${errors} errors (${[...codes].map(([k, v]) => `${k} ${v}`).join(", ")})`
          : "",
      ]
        .filter(Boolean)
        .join("; ");
      const best = cells.reduce((a, b) => (b.throughput > a.throughput ? b : a));
      rows.push({
        group: GROUP,
        scenario,
        subject,
        concurrency: Number(concurrency),
        throughput: best.throughput,
        unit: "calls/s",
        p50Ms: best.p50Ms,
        p99Ms: best.p99Ms,
        note,
        peerOf: subject === RAW_PEER ? undefined : RAW_PEER,
      });
    }
    return rows;
  } finally {
    for (const server of servers) await server.stop();
    await redis.stop();
  }
}

/** Times `work` over at least `ms`, returning ms per call. */
function time(work: () => void, ms: number): number {
  work();
  let n = 0;
  const started = performance.now();
  while (performance.now() - started < ms) {
    work();
    n++;
  }
  return (performance.now() - started) / n;
}

async function timeAsync(work: () => Promise<unknown>, ms: number): Promise<number> {
  await work();
  let n = 0;
  const started = performance.now();
  while (performance.now() - started < ms) {
    await work();
    n++;
  }
  return (performance.now() - started) / n;
}

async function measureCompression(options: BenchOptions): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const budgetMs = options.quick ? 500 : 1500;
  const mibPerS = (bytes: number, ms: number) => bytes / 1024 / 1024 / (ms / 1000);
  for (const [label, bytes] of COMPRESSION_SIZES) {
    const state = workflowState(bytes);
    const scenario = `JSON state ${label}`;
    const encoded = await encodeState(state, THRESHOLD);
    if (encoded.encoding !== "br") throw new Error(`${label}: not compressed`);
    const compressMs = await timeAsync(() => encodeState(state, THRESHOLD), budgetMs);
    const inflateMs = await timeAsync(() => decodeState(encoded), budgetMs);
    const round = await decodeState(encoded);
    if (Buffer.compare(round, state) !== 0) throw new Error(`${label}: round trip differs`);
    rows.push({
      group: COMPRESSION_GROUP,
      scenario,
      subject: "brotli q1 (latchkey)",
      concurrency: 1,
      throughput: mibPerS(bytes, compressMs),
      unit: "MiB/s",
      p50Ms: compressMs,
      note: `ratio ${(bytes / encoded.bytes.length).toFixed(2)}; inflate ${mibPerS(bytes, inflateMs).toFixed(0)} MiB/s (${inflateMs.toFixed(2)} ms); p50 = ms per state`,
      peerOf: "deflate level 1",
    });
    const deflated = deflateRawSync(state, { level: 1 });
    const deflateMs = time(() => deflateRawSync(state, { level: 1 }), budgetMs);
    const inflateRawMs = time(() => inflateRawSync(deflated), budgetMs);
    rows.push({
      group: COMPRESSION_GROUP,
      scenario,
      subject: "deflate level 1",
      concurrency: 1,
      throughput: mibPerS(bytes, deflateMs),
      unit: "MiB/s",
      p50Ms: deflateMs,
      note: `ratio ${(bytes / deflated.length).toFixed(2)}; inflate ${mibPerS(bytes, inflateRawMs).toFixed(0)} MiB/s`,
    });
    const q4 = {
      params: { [constants.BROTLI_PARAM_QUALITY]: 4, [constants.BROTLI_PARAM_SIZE_HINT]: bytes },
    };
    const brotli4 = brotliCompressSync(state, q4);
    const brotli4Ms = time(() => brotliCompressSync(state, q4), budgetMs);
    const brotli4InflateMs = time(() => brotliDecompressSync(brotli4), budgetMs);
    rows.push({
      group: COMPRESSION_GROUP,
      scenario,
      subject: "brotli q4",
      concurrency: 1,
      throughput: mibPerS(bytes, brotli4Ms),
      unit: "MiB/s",
      p50Ms: brotli4Ms,
      note: `ratio ${(bytes / brotli4.length).toFixed(2)}; inflate ${mibPerS(bytes, brotli4InflateMs).toFixed(0)} MiB/s`,
    });
    options.log(
      `compression ${label}: brotli q1 ${(bytes / encoded.bytes.length).toFixed(2)}x in ${compressMs.toFixed(2)} ms; deflate-1 ${(bytes / deflated.length).toFixed(2)}x in ${deflateMs.toFixed(2)} ms`,
    );
  }
  return rows;
}

export const snapshotsScenario: Scenario = {
  name: "snapshots",
  async run(options) {
    options.note?.(
      GROUP,
      `Driven by a Connect-ES gRPC client in the runner (core 1), C workers in flight, each saving its own execution with increasing sequences or loading seeded ones; the service and Redis on core 0. States are workflow JSON; above 16 KiB they are stored brotli-compressed (the server compresses on Save and inflates on Load). For 1 KiB the client's own CPU caps the rate. Peer: "${RAW_PEER}" = ioredis in the runner on one connection to the same Redis, Save = one Lua script that checks the sequence and HSETs the state as sent, Load = HGET: the least a hand-rolled Redis snapshot store does, without gRPC, compression, metadata or changefeed.`,
    );
    options.note?.(
      COMPRESSION_GROUP,
      "encodeState/decodeState of core/snapshots.ts (brotli quality 1; states above 256 KiB are compressed on the libuv pool, off the event loop) against deflate level 1 and brotli quality 4 on the same JSON. Throughput is compression speed; p50 is ms per state; the note has the ratio and the inflate speed.",
    );
    const compression = await measureCompression(options);
    const service = await measureService(options);
    return [...service, ...compression];
  },
};
