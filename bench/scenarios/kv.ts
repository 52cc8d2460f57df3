/**
 * KV throughput and latency, gRPC unary, one core for the server.
 *
 * Latchkey (Redis backend, the production one, and memory backend) and etcd
 * 3.4 are driven by h2load with the same framed requests at 1 and 64
 * requests in flight (1x1 and 4 connections x 16 streams); raw Redis by
 * redis-benchmark with 1 and 64 clients. Every server is pinned to core 0
 * (Latchkey's Redis too), every load generator to core 1. Cells alternate
 * subjects round by round (A B C, then C B A) so a noisy minute hits all.
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { fromBinary } from "@bufbuild/protobuf";
import {
  Compare_Operator,
  GetRequestSchema,
  GetResponseSchema,
  PutRequestSchema,
  PutResponseSchema,
  RangeRequestSchema,
  RangeResponseSchema,
  TxnRequestSchema,
  TxnResponseSchema,
} from "../../src/gen/latchkey/v1/kv_pb.js";
import { type EtcdServer, etcdVersion, startEtcd } from "../lib/etcd.js";
import {
  ETCD_PUT,
  ETCD_RANGE,
  ETCD_TXN,
  CompareResult as EtcdCompare,
  etcdGet,
  etcdPrefixRange,
  etcdPut,
  etcdTxnPutIfVersion,
} from "../lib/etcd-wire.js";
import { encodeFramed, readVarint, type UnaryResult, unaryCall, writeBody } from "../lib/grpc.js";
import { runH2load } from "../lib/h2load.js";
import { type LatchkeyServer, startLatchkey } from "../lib/latchkey.js";
import {
  type CodeCounts,
  errorDelta,
  fetchText,
  formatCodes,
  parseCodeCounts,
} from "../lib/metrics.js";
import { memoryOf } from "../lib/procfs.js";
import { type RedisServer, redisVersion, startRedis } from "../lib/redis.js";
import { runRedisBenchmark } from "../lib/redis-benchmark.js";
import { mean, spread, summarize } from "../lib/stats.js";
import type { BenchOptions, BenchRow, Scenario } from "../types.js";

export const GROUP = "KV: gRPC unary, server on one core";
const SERVER_CORE = 0;
const LOAD_CORE = 1;
const VALUE_BYTES = 128;
const RANGE_KEYS = 10;
/** [label, h2load clients, streams per client]. */
const LEVELS = [
  [1, 1, 1],
  [64, 4, 16],
] as const;

const LK_KV = "/latchkey.v1.KvService";
const KEYS = {
  get: "bench/kv/get",
  put: "bench/kv/put",
  cas: "bench/kv/put-if-exists",
  txn: "bench/kv/txn",
  rangePrefix: "bench/range/",
};

type OpName = "Get" | "Put" | "Put if exists" | "Range 10 keys" | "Txn compare+put";
const OP_NAMES: readonly OpName[] = [
  "Get",
  "Put",
  "Put if exists",
  "Range 10 keys",
  "Txn compare+put",
];

/** One request a subject answers: path, framed body, and a check of one real answer. */
interface Call {
  readonly path: string;
  readonly body: Buffer;
  readonly check: (message: Buffer) => string | undefined;
  /** Method name in the server's per-code metrics. */
  readonly method: string;
}

interface H2Subject {
  readonly name: string;
  readonly url: string;
  readonly calls: ReadonlyMap<OpName, Call>;
  /** Per-code call counts of a method, for the error check around each run. */
  readonly codes: (method: string) => Promise<CodeCounts>;
  readonly okCode: string;
  readonly pid: number;
  peerOf?: string;
  floor?: (op: OpName) => string | undefined;
}

interface RedisCell {
  readonly name: string;
  readonly op: OpName;
  readonly test: string | readonly string[];
}

const value = Buffer.alloc(VALUE_BYTES, "v");

function latchkeyCalls(): Map<OpName, Call> {
  const calls = new Map<OpName, Call>();
  calls.set("Get", {
    path: `${LK_KV}/Get`,
    method: "Get",
    body: encodeFramed(GetRequestSchema, { key: KEYS.get }),
    check: (m) =>
      fromBinary(GetResponseSchema, m).kv?.value.length === VALUE_BYTES
        ? undefined
        : "Get: no value",
  });
  calls.set("Put", {
    path: `${LK_KV}/Put`,
    method: "Put",
    body: encodeFramed(PutRequestSchema, { key: KEYS.put, value }),
    check: (m) =>
      (fromBinary(PutResponseSchema, m).kv?.version ?? 0n) > 0n ? undefined : "Put: no version",
  });
  calls.set("Put if exists", {
    path: `${LK_KV}/Put`,
    method: "Put",
    body: encodeFramed(PutRequestSchema, {
      key: KEYS.cas,
      value,
      precondition: { condition: { case: "mustExist", value: true } },
    }),
    check: (m) =>
      (fromBinary(PutResponseSchema, m).kv?.version ?? 0n) > 1n
        ? undefined
        : "Put if exists: not applied",
  });
  calls.set("Range 10 keys", {
    path: `${LK_KV}/Range`,
    method: "Range",
    body: encodeFramed(RangeRequestSchema, { prefix: KEYS.rangePrefix }),
    check: (m) => {
      const n = fromBinary(RangeResponseSchema, m).kvs.length;
      return n === RANGE_KEYS ? undefined : `Range: ${n} keys, expected ${RANGE_KEYS}`;
    },
  });
  calls.set("Txn compare+put", {
    path: `${LK_KV}/Txn`,
    method: "Txn",
    body: encodeFramed(TxnRequestSchema, {
      compare: [
        {
          key: KEYS.txn,
          operator: Compare_Operator.GREATER,
          target: { case: "version", value: 0n },
        },
      ],
      success: [{ request: { case: "put", value: { key: KEYS.txn, value } } }],
    }),
    check: (m) => (fromBinary(TxnResponseSchema, m).succeeded ? undefined : "Txn: compare failed"),
  });
  return calls;
}

function etcdCalls(): Map<OpName, Call> {
  const calls = new Map<OpName, Call>();
  const count = (expected: number) => (m: Buffer) => {
    const n = readVarint(m, 4); // RangeResponse.count
    return n === expected ? undefined : `etcd Range: count ${n}, expected ${expected}`;
  };
  const succeeded = (m: Buffer) =>
    readVarint(m, 2) === 1 ? undefined : "etcd Txn: compare failed";
  calls.set("Get", { path: ETCD_RANGE, method: "Range", body: etcdGet(KEYS.get), check: count(1) });
  calls.set("Put", {
    path: ETCD_PUT,
    method: "Put",
    body: etcdPut(KEYS.put, value),
    check: () => undefined,
  });
  calls.set("Put if exists", {
    path: ETCD_TXN,
    method: "Txn",
    body: etcdTxnPutIfVersion(KEYS.cas, value, EtcdCompare.GREATER, 0),
    check: succeeded,
  });
  calls.set("Range 10 keys", {
    path: ETCD_RANGE,
    method: "Range",
    body: etcdPrefixRange(KEYS.rangePrefix),
    check: count(RANGE_KEYS),
  });
  calls.set("Txn compare+put", {
    path: ETCD_TXN,
    method: "Txn",
    body: etcdTxnPutIfVersion(KEYS.txn, value, EtcdCompare.GREATER, 0),
    check: succeeded,
  });
  return calls;
}

/**
 * Lua scripts that do what Latchkey's scripts must at least do, written for
 * the floor: a put bumps the tenant revision, rewrites the record, indexes
 * the key and appends to the changefeed stream; a get reads the revision and
 * the record; a range walks the sorted index and reads each record.
 */
const FLOOR_SCRIPTS = {
  get: `local rev = redis.call('HGET', KEYS[1], 'rev')
return {rev, redis.call('HGETALL', KEYS[2])}`,
  put: `local rev = redis.call('HINCRBY', KEYS[1], 'rev', 1)
local ver = redis.call('HINCRBY', KEYS[4], 'ver', 1)
redis.call('HSET', KEYS[4], 'val', ARGV[2], 'mod', rev)
redis.call('ZADD', KEYS[2], 0, ARGV[1])
redis.call('XADD', KEYS[3], 'MAXLEN', '100000', '*', 'k', ARGV[1], 'r', rev, 'v', ARGV[2])
return {rev, ver}`,
  range: `local rev = redis.call('HGET', KEYS[1], 'rev')
local keys = redis.call('ZRANGE', KEYS[2], '[' .. ARGV[1], '[' .. ARGV[1] .. '\\255', 'BYLEX', 'LIMIT', 0, 1000)
local out = {}
for i, k in ipairs(keys) do out[i] = redis.call('HGETALL', ARGV[2] .. k) end
return {rev, out}`,
};

async function redisFloorCells(redis: RedisServer, version: string): Promise<RedisCell[]> {
  const c = redis.client;
  const meta = "{floor}:meta";
  const idx = "{floor}:idx";
  const feed = "{floor}:feed";
  const rec = "{floor}:rec:";
  await c.hset(meta, "rev", 1);
  await c.hset(`${rec}get`, "val", value, "mod", 1, "ver", 1);
  for (let i = 0; i < RANGE_KEYS; i++) {
    const k = `${KEYS.rangePrefix}k${i}`;
    await c.zadd(idx, 0, k);
    await c.hset(`${rec}${k}`, "val", value, "mod", 1, "ver", 1);
  }
  const sha = {
    get: (await c.script("LOAD", FLOOR_SCRIPTS.get)) as string,
    put: (await c.script("LOAD", FLOOR_SCRIPTS.put)) as string,
    range: (await c.script("LOAD", FLOOR_SCRIPTS.range)) as string,
  };
  const v = value.toString("latin1");
  const name = (what: string) => `redis ${version}: ${what}`;
  return [
    { name: name("GET"), op: "Get", test: "get" },
    {
      name: name("EVALSHA get-like"),
      op: "Get",
      test: ["EVALSHA", sha.get, "2", meta, `${rec}get`],
    },
    { name: name("SET"), op: "Put", test: "set" },
    {
      name: name("EVALSHA put-like"),
      op: "Put",
      test: ["EVALSHA", sha.put, "4", meta, idx, feed, `${rec}put`, "put", v],
    },
    {
      name: name("EVALSHA range-like"),
      op: "Range 10 keys",
      test: ["EVALSHA", sha.range, "2", meta, idx, KEYS.rangePrefix, rec],
    },
  ];
}

const FLOOR_OF: Partial<Record<OpName, string>> = {
  Get: "EVALSHA get-like",
  Put: "EVALSHA put-like",
  "Range 10 keys": "EVALSHA range-like",
};

async function check(subject: H2Subject, op: OpName, call: Call): Promise<void> {
  let result: UnaryResult;
  try {
    result = await unaryCall(subject.url, call.path, call.body);
  } catch (error) {
    throw new Error(`${subject.name} ${op}: ${(error as Error).message}`);
  }
  if (result.grpcStatus !== 0) {
    throw new Error(
      `${subject.name} ${op}: grpc-status ${result.grpcStatus} ${result.grpcMessage} (HTTP ${result.httpStatus})`,
    );
  }
  const problem = call.check(result.message);
  if (problem) throw new Error(`${subject.name} ${op}: ${problem}`);
}

async function seed(subject: H2Subject): Promise<void> {
  const lk = subject.calls.get("Get")!.path.startsWith(LK_KV);
  const put = async (key: string) => {
    const body = lk ? encodeFramed(PutRequestSchema, { key, value }) : etcdPut(key, value);
    const r = await unaryCall(subject.url, lk ? `${LK_KV}/Put` : ETCD_PUT, body);
    if (r.grpcStatus !== 0) throw new Error(`${subject.name}: seeding ${key}: ${r.grpcMessage}`);
  };
  for (const key of [KEYS.get, KEYS.put, KEYS.cas, KEYS.txn]) await put(key);
  for (let i = 0; i < RANGE_KEYS; i++) await put(`${KEYS.rangePrefix}k${i}`);
}

interface CellSamples {
  throughput: number[];
  durationsUs: Float64Array[];
  p50: number[];
  p99: number[];
  errors: string[];
}

export const kv: Scenario = {
  name: "kv",
  async run(options: BenchOptions): Promise<BenchRow[]> {
    const log = options.log;
    const note = (text: string) => options.note?.(GROUP, text);
    const logDir = join(options.workDir, "logs");
    mkdirSync(logDir, { recursive: true });
    const rounds = options.rounds ?? 1;
    const seconds = options.durationSeconds;
    const warmup = options.quick ? 1 : 2;
    const stoppers: (() => Promise<void>)[] = [];
    try {
      log("kv: starting Redis, Latchkey (redis), Latchkey (memory) and etcd on core 0...");
      const redis = await startRedis({ core: SERVER_CORE, logDir });
      stoppers.push(() => redis.stop());
      const lkRedis = await startLatchkey({
        core: SERVER_CORE,
        redisUrl: redis.url,
        logDir,
        log,
        label: "redis",
      });
      stoppers.push(() => lkRedis.stop());
      const lkMemory = await startLatchkey({ core: SERVER_CORE, logDir, log, label: "memory" });
      stoppers.push(() => lkMemory.stop());
      const etcdVer = await etcdVersion();
      let etcd: EtcdServer | undefined;
      if (etcdVer) {
        etcd = await startEtcd({ core: SERVER_CORE, logDir });
        stoppers.push(() => etcd!.stop());
      } else {
        note(
          "- etcd is not installed (Debian `etcd-server`): the etcd rows and ratios are skipped.",
        );
        log("kv: no etcd binary: skipping the etcd rows");
      }
      const redisVer = await redisVersion();
      const etcdName = `etcd ${etcdVer ?? ""}`.trim();

      const lkSubject = (name: string, server: LatchkeyServer): H2Subject => ({
        name,
        url: server.url,
        calls: latchkeyCalls(),
        pid: server.pid,
        okCode: "OK",
        codes: async (method) =>
          parseCodeCounts(
            await fetchText(`http://127.0.0.1:${server.adminPort}/metrics`),
            "latchkey_rpc_calls_total",
            "code",
            { service: "latchkey.v1.KvService", method },
          ),
      });
      const subjects: H2Subject[] = [
        lkSubject("latchkey (redis)", lkRedis),
        lkSubject("latchkey (memory)", lkMemory),
      ];
      if (etcd) {
        const e = etcd;
        subjects.push({
          name: etcdName,
          url: e.url,
          calls: etcdCalls(),
          pid: e.pid,
          okCode: "OK",
          codes: async (method) =>
            parseCodeCounts(
              await fetchText(`${e.url}/metrics`),
              "grpc_server_handled_total",
              "grpc_code",
              { grpc_service: "etcdserverpb.KV", grpc_method: method },
            ),
        });
        subjects[0]!.peerOf = etcdName;
        subjects[1]!.peerOf = etcdName;
      }
      const redisCells = await redisFloorCells(redis, redisVer);
      subjects[0]!.floor = (op) => {
        const what = FLOOR_OF[op];
        return what ? `redis ${redisVer}: ${what}` : undefined;
      };

      // Bodies on disk for h2load, each validated with one real call.
      const bodyDir = join(options.workDir, "bodies");
      mkdirSync(bodyDir, { recursive: true });
      const bodyFile = new Map<string, string>();
      for (const s of subjects) {
        await seed(s);
        for (const op of OP_NAMES) {
          const call = s.calls.get(op)!;
          await check(s, op, call);
          const file = join(
            bodyDir,
            `${s.name.replace(/\W+/g, "_")}-${op.replace(/\W+/g, "_")}.bin`,
          );
          bodyFile.set(`${s.name}/${op}`, writeBody(file, call.body));
        }
      }
      const h2 = (
        s: H2Subject,
        op: OpName,
        clients: number,
        streams: number,
        dur: number,
        wu: number,
      ) =>
        runH2load({
          url: `${s.url}${s.calls.get(op)!.path}`,
          bodyFile: bodyFile.get(`${s.name}/${op}`)!,
          clients,
          streams,
          durationSeconds: dur,
          warmupSeconds: wu,
          core: LOAD_CORE,
          logFile: join(options.workDir, "h2load-requests.log"),
        });

      log(`kv: warming up every subject (${warmup + 1} s per operation)...`);
      for (const s of subjects) for (const op of OP_NAMES) await h2(s, op, 4, 16, 1, warmup);

      const cells = new Map<string, CellSamples>();
      const cell = (subject: string, op: OpName, level: number) => {
        const k = `${subject}/${op}/${level}`;
        let c = cells.get(k);
        if (!c) {
          c = { throughput: [], durationsUs: [], p50: [], p99: [], errors: [] };
          cells.set(k, c);
        }
        return c;
      };

      for (const op of OP_NAMES) {
        for (const [level, clients, streams] of LEVELS) {
          for (let round = 0; round < rounds; round++) {
            const order: (H2Subject | RedisCell)[] = [
              ...subjects,
              ...redisCells.filter((r) => r.op === op),
            ];
            if (round % 2 === 1) order.reverse();
            for (const s of order) {
              const c = cell(s.name, op, level);
              if ("test" in s) {
                const r = await runRedisBenchmark({
                  port: redis.port,
                  core: LOAD_CORE,
                  clients: level,
                  seconds,
                  test: s.test,
                  dataSize: VALUE_BYTES,
                });
                c.throughput.push(r.rps);
                c.p50.push(r.p50Ms);
                c.p99.push(r.p99Ms);
                log(`  ${op} @${level} ${s.name}: ${Math.round(r.rps)}/s p99 ${r.p99Ms} ms`);
                continue;
              }
              const method = s.calls.get(op)!.method;
              const before = await s.codes(method);
              const r = await h2(s, op, clients, streams, seconds, warmup);
              const errors = errorDelta(before, await s.codes(method), s.okCode);
              // Calls in flight when h2load stops are cut (CANCELLED or Unknown): at most `level`.
              const total = [...errors.values()].reduce((a, b) => a + b, 0);
              if (total > level) c.errors.push(formatCodes(errors));
              const bad = r.report.requests.total - r.report.requests.succeeded;
              if (bad > 0) c.errors.push(`${bad} requests failed at the HTTP level`);
              c.throughput.push(r.report.requestsPerSecond);
              c.durationsUs.push(r.durationsUs);
              log(
                `  ${op} @${level} ${s.name}: ${Math.round(r.report.requestsPerSecond)}/s p50 ${r.latencyMs.p50.toFixed(3)} p99 ${r.latencyMs.p99.toFixed(3)} ms`,
              );
            }
          }
        }
      }

      const rows: BenchRow[] = [];
      for (const op of OP_NAMES) {
        for (const [level] of LEVELS) {
          const emit = (name: string, extra: Partial<BenchRow>, tool: string) => {
            const c = cells.get(`${name}/${op}/${level}`);
            if (!c) return;
            let p50: number;
            let p99: number;
            if (c.durationsUs.length) {
              const all = new Float64Array(c.durationsUs.reduce((n, d) => n + d.length, 0));
              let at = 0;
              for (const d of c.durationsUs) {
                all.set(d, at);
                at += d.length;
              }
              const s = summarize(all);
              p50 = s.p50 / 1000;
              p99 = s.p99 / 1000;
            } else {
              p50 = mean(c.p50);
              p99 = mean(c.p99);
            }
            const runs =
              c.throughput.length > 1
                ? `runs ${c.throughput.map((t) => Math.round(t)).join(" / ")} (spread ${(spread(c.throughput) * 100).toFixed(0)}%)`
                : "";
            rows.push({
              group: GROUP,
              scenario: op,
              subject: name,
              concurrency: level,
              throughput: mean(c.throughput),
              unit: "calls/s",
              p50Ms: p50,
              p99Ms: p99,
              note: [tool, runs, ...c.errors.map((e) => `non-OK: ${e}`)].filter(Boolean).join("; "),
              ...extra,
            });
          };
          for (const s of subjects) {
            emit(
              s.name,
              { peerOf: s.peerOf, floor: s.floor?.(op) },
              `h2load ${level === 1 ? "1x1" : "4x16"}`,
            );
          }
          for (const r of redisCells.filter((x) => x.op === op)) {
            emit(r.name, {}, `redis-benchmark -c ${level}`);
          }
        }
      }

      for (const s of subjects) {
        try {
          const m = memoryOf(s.pid);
          note(
            `- ${s.name} RSS after the run: ${m.rssMb.toFixed(0)} MiB (peak ${m.hwmMb.toFixed(0)} MiB)`,
          );
        } catch {
          // gone
        }
      }
      note(
        [
          `- Each cell: ${seconds} s measured after ${warmup} s of warm-up, ${rounds} round(s) alternating the subjects' order; throughput is the mean of the rounds (their spread in the note), p50/p99 pooled over every request of the rounds from h2load's per-request log (redis-benchmark: its own percentiles, averaged).`,
          `- conc. = requests in flight: 1 = h2load -c1 -m1 / redis-benchmark -c 1; 64 = h2load -c4 -m16 / redis-benchmark -c 64 (no pipelining). Values ${VALUE_BYTES} B.`,
          `- What each subject runs: Get = Latchkey Get / etcd Range of one key / Redis GET; Put = Put / Put / SET; Put if exists = Put with precondition must_exist / etcd Txn(version(key) > 0 → put); Range 10 keys = Range prefix (10 keys) / etcd Range [prefix, prefix+1); Txn compare+put = Txn(version > 0 → put) / the same etcd Txn.`,
          "- etcd: single member, linearizable reads (the default), WAL fsync on the local ext4 disk, auto-compaction 1 min. Redis: no persistence, shared by Latchkey (redis) and the raw-Redis rows.",
          "- ÷ peer = Latchkey ÷ etcd measured in the same run (throughput: higher is better; p99: lower is better). ÷ floor = Latchkey (redis) ÷ redis-benchmark running a Lua script that does the minimum Redis work of that call (EVALSHA *-like), Redis alone on core 0.",
        ].join("\n"),
      );
      return rows;
    } finally {
      for (const stop of stoppers.reverse()) await stop().catch(() => {});
    }
  },
};
