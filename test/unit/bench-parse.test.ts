/**
 * The benchmark's parsers, on output captured from the tools installed here
 * (h2load nghttp2 1.52.0, redis-benchmark 7.0.15, Latchkey's and etcd
 * 3.4's /metrics). No speed is asserted: these only check that the figures
 * `npm run bench` prints are read correctly.
 */
import { describe, expect, it } from "vitest";
import { prefixEnd } from "../../bench/lib/etcd-wire.js";
import { FrameSplitter, grpcFrame, readNestedVarint, WireReader } from "../../bench/lib/grpc.js";
import { parseH2loadLog, parseH2loadOutput } from "../../bench/lib/h2load.js";
import { errorDelta, parseCodeCounts } from "../../bench/lib/metrics.js";
import { parseRedisBenchmarkCsv } from "../../bench/lib/redis-benchmark.js";
import { LogHistogram, percentileSorted, summarize } from "../../bench/lib/stats.js";
import { renderTables } from "../../bench/lib/table.js";

// h2load -c1 -m1 -D 3 --warm-up-time 1 ... /latchkey.v1.KvService/Put
const H2LOAD_TIMED = `starting benchmark...
spawning thread #0: 1 total client(s). Timing-based test with 1s of warm-up time and 3s of main duration for measurements.
Warm-up started for thread #0.
progress: 100% of clients started
Application protocol: h2c
Warm-up phase is over for thread #0.
Main benchmark duration is started for thread #0.
Main benchmark duration is over for thread #0. Stopping all clients.
Stopped all clients for thread #0

finished in 4.00s, 782.67 req/s, 46.67KB/s
requests: 2348 total, 2348 started, 2348 done, 2348 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 2348 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 140.01KB (143371) total, 8.21KB (8402) headers (space savings 96.18%), 81.25KB (83199) data
                     min         max         mean         sd        +/- sd
time for request:      260us     22.93ms      1.26ms      1.54ms    88.88%
time for connect:        0us         0us         0us         0us     0.00%
time to 1st byte:        0us         0us         0us         0us     0.00%
req/s           :     782.32      782.32      782.32        0.00   100.00%
`;

// h2load -c1 -m1 -n 50 ... /latchkey.v1.KvService/Get (request-count mode)
const H2LOAD_COUNTED = `starting benchmark...
spawning thread #0: 1 total client(s). 50 total requests
Application protocol: h2c
progress: 10% done
progress: 100% done

finished in 51.01ms, 980.20 req/s, 38.12KB/s
requests: 50 total, 50 started, 50 done, 50 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 50 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 1.94KB (1991) total, 194B (194) headers (space savings 95.09%), 350B (350) data
                     min         max         mean         sd        +/- sd
time for request:      314us     10.50ms       963us      1.90ms    96.00%
time for connect:      260us       260us       260us         0us   100.00%
time to 1st byte:     9.40ms      9.40ms      9.40ms         0us   100.00%
req/s           :    1012.50     1012.50     1012.50        0.00   100.00%
`;

// h2load --log-file: start (us since epoch), HTTP status, us until the end of the response.
const H2LOAD_LOG = `1795313022901752\t200\t10503
1795313022912315\t200\t1264
1795313022913594\t200\t930
1795313022914600\t503\t400
`;

// redis-benchmark -c 1 -n 20000 -t get,set -d 128 --csv, then a custom command.
const REDIS_CSV = `"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
"SET","6576.78","0.147","0.024","0.055","0.119","3.551","19.999"
"GET","4398.50","0.219","0.024","0.055","0.679","3.767","172.671"
`;
const REDIS_CSV_EVALSHA = `"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
"evalsha 61636018f4e6b5817b89791bbed242f93fa089e3 1 foo","6821.28","0.142","0.024","0.063","0.135","3.511","8.991"
`;

const LATCHKEY_METRICS = `# HELP latchkey_rpc_calls_total Calls handled, by service, method and gRPC status code.
# TYPE latchkey_rpc_calls_total counter
latchkey_rpc_calls_total{service="latchkey.v1.KvService",method="Get",code="OK"} 50
latchkey_rpc_calls_total{service="latchkey.v1.KvService",method="Get",code="INVALID_ARGUMENT"} 3
latchkey_rpc_calls_total{service="latchkey.v1.KvService",method="Put",code="OK"} 7
`;
const ETCD_METRICS = `grpc_server_handled_total{grpc_code="OK",grpc_method="Put",grpc_service="etcdserverpb.KV",grpc_type="unary"} 47719
grpc_server_handled_total{grpc_code="OK",grpc_method="Range",grpc_service="etcdserverpb.KV",grpc_type="unary"} 41896
grpc_server_handled_total{grpc_code="Unknown",grpc_method="Put",grpc_service="etcdserverpb.KV",grpc_type="unary"} 18
`;

describe("h2load output", () => {
  it("reads a timed run (-D with warm-up)", () => {
    const r = parseH2loadOutput(H2LOAD_TIMED);
    expect(r.requestsPerSecond).toBe(782.67);
    expect(r.finishedSeconds).toBe(4);
    expect(r.requests).toEqual({
      total: 2348,
      started: 2348,
      done: 2348,
      succeeded: 2348,
      failed: 0,
      errored: 0,
      timeout: 0,
    });
    expect(r.status.s2xx).toBe(2348);
    expect(r.requestTimeMs.min).toBeCloseTo(0.26);
    expect(r.requestTimeMs.max).toBeCloseTo(22.93);
    expect(r.requestTimeMs.mean).toBeCloseTo(1.26);
  });

  it("reads a counted run with ms totals", () => {
    const r = parseH2loadOutput(H2LOAD_COUNTED);
    expect(r.finishedSeconds).toBeCloseTo(0.05101);
    expect(r.requestsPerSecond).toBe(980.2);
    expect(r.requestTimeMs.mean).toBeCloseTo(0.963);
  });

  it("rejects output it does not understand", () => {
    expect(() => parseH2loadOutput("connect() failed")).toThrow(/not understood/);
  });

  it("reads the per-request log, keeping 2xx durations", () => {
    const { durationsUs, non2xx } = parseH2loadLog(H2LOAD_LOG);
    expect([...durationsUs]).toEqual([10503, 1264, 930]);
    expect(non2xx).toBe(1);
  });
});

describe("redis-benchmark --csv", () => {
  it("reads built-in tests", () => {
    const [set, get] = parseRedisBenchmarkCsv(REDIS_CSV);
    expect(set).toMatchObject({ test: "SET", rps: 6576.78, p50Ms: 0.055, p99Ms: 3.551 });
    expect(get).toMatchObject({ test: "GET", rps: 4398.5, maxMs: 172.671 });
  });

  it("reads a custom command's row", () => {
    const [row] = parseRedisBenchmarkCsv(REDIS_CSV_EVALSHA);
    expect(row?.test).toMatch(/^evalsha /);
    expect(row?.rps).toBe(6821.28);
    expect(row?.p99Ms).toBe(3.511);
  });

  it("ignores the non-CSV progress lines", () => {
    const rows = parseRedisBenchmarkCsv(`GET: rps=29284.0 (overall: 29095.2)\r\n${REDIS_CSV}`);
    expect(rows).toHaveLength(2);
  });
});

describe("metrics scrape", () => {
  it("sums Latchkey's calls by code for one method", () => {
    const counts = parseCodeCounts(LATCHKEY_METRICS, "latchkey_rpc_calls_total", "code", {
      method: "Get",
    });
    expect(Object.fromEntries(counts)).toEqual({ OK: 50, INVALID_ARGUMENT: 3 });
  });

  it("reads etcd's grpc_server_handled_total and diffs non-OK codes", () => {
    const after = parseCodeCounts(ETCD_METRICS, "grpc_server_handled_total", "grpc_code", {
      grpc_method: "Put",
    });
    const delta = errorDelta(new Map([["Unknown", 10]]), after);
    expect(Object.fromEntries(delta)).toEqual({ Unknown: 8 });
  });
});

describe("statistics", () => {
  it("nearest-rank percentiles", () => {
    const sorted = Float64Array.from({ length: 100 }, (_, i) => i + 1);
    expect(percentileSorted(sorted, 0.5)).toBe(50);
    expect(percentileSorted(sorted, 0.99)).toBe(99);
    expect(summarize([3, 1, 2]).p50).toBe(2);
  });

  it("log histogram percentiles within 1% and mergeable", () => {
    const a = new LogHistogram();
    const b = new LogHistogram();
    for (let i = 1; i <= 1000; i++) (i % 2 ? a : b).record(i * 10);
    a.merge(b.toJSON());
    expect(a.total).toBe(1000);
    expect(a.percentile(0.5) / 5000).toBeGreaterThan(0.99);
    expect(a.percentile(0.5) / 5000).toBeLessThan(1.02);
    expect(a.percentile(1)).toBe(10_000);
  });
});

describe("wire helpers", () => {
  it("etcd prefix range end", () => {
    expect(prefixEnd("bench/range/")).toBe("bench/range0");
  });

  it("splits gRPC frames across chunks", () => {
    // GetResponse { header { revision: 300 } }: 0a 03 08 ac 02
    const message = Buffer.from([0x0a, 0x03, 0x08, 0xac, 0x02]);
    const stream = Buffer.concat([grpcFrame(message), grpcFrame(message)]);
    const seen: number[] = [];
    const splitter = new FrameSplitter();
    splitter.push(stream.subarray(0, 7), (m) => seen.push(readNestedVarint(m, 1, 1)));
    splitter.push(stream.subarray(7), (m) => seen.push(readNestedVarint(m, 1, 1)));
    expect(seen).toEqual([300, 300]);
  });

  it("refuses a truncated varint or an overrunning field instead of spinning", () => {
    // 300 as a varint is ac 02; cut after the first byte.
    expect(new WireReader(Uint8Array.of(0xac, 0x02)).varint()).toBe(300);
    expect(() => new WireReader(Uint8Array.of(0xac)).varint()).toThrow(/varint/);
    expect(() => new WireReader(new Uint8Array(11).fill(0xff)).varint()).toThrow(/varint/);
    // Field of length 5 with only 2 bytes behind it.
    expect(() => new WireReader(Uint8Array.of(0x05, 1, 2)).bytes()).toThrow(/overruns/);
  });
});

describe("tables", () => {
  it("puts the ratio to the peer on the Latchkey row", () => {
    const md = renderTables(
      [
        {
          group: "G",
          scenario: "Get",
          subject: "latchkey",
          concurrency: 64,
          throughput: 15_000,
          unit: "calls/s",
          p99Ms: 2,
          peerOf: "etcd",
        },
        {
          group: "G",
          scenario: "Get",
          subject: "etcd",
          concurrency: 64,
          throughput: 10_000,
          unit: "calls/s",
          p99Ms: 4,
        },
      ],
      new Map(),
    );
    expect(md).toContain(
      "| Get | 64 | latchkey | 15,000 calls/s | – | 2.00 | 1.50× etcd | 0.50× |",
    );
  });
});
