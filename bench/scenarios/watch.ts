/**
 * Watch fan-out on one replica: W concurrent watchers, a steady write rate,
 * delivery latency from the write's ack to the event's receipt (p50/p99),
 * and the service's RSS.
 *
 * The service (and its Redis) run pinned to core 0. Watchers run in several
 * child processes pinned to core 1, each with many Watch streams over a few
 * HTTP/2 connections; the writer is another process on core 1. Times come
 * from CLOCK_MONOTONIC (process.hrtime), which every process on the machine
 * shares: the writer stamps the send time into each value and records the
 * ack time per revision; the watcher processes stamp arrival times; the two
 * are joined by revision after the run.
 *
 * Layouts (what "fan-out" means here, stated per row):
 *  - spread: the W watchers are spread over P = min(W, 1000) prefixes (W/P
 *    per prefix), and writes go round-robin to one key under each prefix at
 *    1000 writes/s: every write reaches W/P watchers, so 10 000 watchers at
 *    1000 writes/s is 10 000 deliveries/s. This is the target's layout.
 *  - hot: all W watchers on one prefix; every write reaches all of them, so
 *    the write rate is capped to keep W x rate <= HOT_DELIVERIES per second
 *    (10 000 watchers on one prefix at 1000 writes/s would be 10 M
 *    deliveries/s, which no single core serves).
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { PutRequestSchema } from "../../src/gen/latchkey/v1/kv_pb.js";
import { encodeFramed, unaryCall } from "../lib/grpc.js";
import { type LatchkeyServer, startLatchkey } from "../lib/latchkey.js";
import { REPO_ROOT } from "../lib/paths.js";
import { type Managed, requestReply, sleep, spawnManaged } from "../lib/proc.js";
import { coreBusy, cpuSecondsOf, cpuSecondsOrZero, memoryOf, sampleRss } from "../lib/procfs.js";
import { type RedisServer, startRedis } from "../lib/redis.js";
import { LogHistogram, summarize } from "../lib/stats.js";
import { formatNumber } from "../lib/table.js";
import type { WorkerResult } from "../lib/watch-worker.js";
import type { WriterResult } from "../lib/watch-writer.js";
import type { BenchOptions, BenchRow, Scenario } from "../types.js";

export const GROUP = "Watch fan-out: one replica, server on one core";
const SERVER_CORE = 0;
const LOAD_CORE = 1;
const WATCHER_COUNTS = [1, 100, 1000, 10_000] as const;
const SPREAD_PREFIXES = 1000;
const SPREAD_RATE = 1000;
/** Deliveries per second the hot layout aims at (rate = min(1000, this / W)). */
const HOT_DELIVERIES = 20_000;
const MAX_WORKERS = 4;
const STREAMS_PER_CONNECTION = 500;

const WORKER = fileURLToPath(new URL("../lib/watch-worker.ts", import.meta.url));
const WRITER = fileURLToPath(new URL("../lib/watch-writer.ts", import.meta.url));

interface Layout {
  readonly name: string;
  prefixes(watchers: number): number;
  rate(watchers: number): number;
}

export const LAYOUTS: readonly Layout[] = [
  {
    name: `spread: ≤${formatNumber(SPREAD_PREFIXES)} prefixes, ${formatNumber(SPREAD_RATE)} writes/s`,
    prefixes: (w) => Math.min(w, SPREAD_PREFIXES),
    rate: () => SPREAD_RATE,
  },
  {
    name: `hot: 1 prefix, ≤${formatNumber(HOT_DELIVERIES)} deliveries/s`,
    prefixes: () => 1,
    rate: (w) => Math.min(1000, Math.floor(HOT_DELIVERIES / w)),
  },
];

const count = (n: number) => Math.round(n).toLocaleString("en-US");
const prefixName = (i: number) => `bench/w/p${String(i).padStart(4, "0")}/`;

function spawnNode(name: string, file: string, logDir: string): Managed {
  return spawnManaged(name, process.execPath, ["--import", "tsx", file], {
    core: LOAD_CORE,
    cwd: REPO_ROOT,
    ipc: true,
    logFile: join(logDir, `${name}.log`),
  });
}

interface CellResult {
  readonly row: BenchRow;
  readonly summary: string;
}

export async function runCell(
  options: BenchOptions,
  backend: { label: string; redis?: RedisServer | undefined },
  layout: Layout,
  watchers: number,
  logDir: string,
): Promise<CellResult> {
  const log = options.log;
  const warmup = options.quick ? 1 : 2;
  const seconds = options.durationSeconds;
  const P = layout.prefixes(watchers);
  const rate = layout.rate(watchers);
  const perPrefix = watchers / P;
  const stoppers: (() => Promise<void>)[] = [];
  try {
    if (backend.redis) await backend.redis.client.flushall();
    const service: LatchkeyServer = await startLatchkey({
      core: SERVER_CORE,
      redisUrl: backend.redis?.url,
      logDir,
      log,
      label: `watch-${backend.label}`,
    });
    stoppers.push(() => service.stop());
    const keys = Array.from({ length: P }, (_, i) => `${prefixName(i)}k`);
    // One write so the tenant exists and its revision is known.
    await unaryCall(
      service.url,
      "/latchkey.v1.KvService/Put",
      encodeFramed(PutRequestSchema, { key: "bench/w/init", value: new Uint8Array(1) }),
    );
    const baseline = memoryOf(service.pid);

    // Watchers: split into up to MAX_WORKERS processes on the load core.
    const nWorkers = Math.min(MAX_WORKERS, watchers);
    const workers: Managed[] = [];
    const assignments: string[][] = Array.from({ length: nWorkers }, () => []);
    for (let i = 0; i < watchers; i++) assignments[i % nWorkers]!.push(prefixName(i % P));
    for (let i = 0; i < nWorkers; i++) {
      const w = spawnNode(`watch-worker-${i}`, WORKER, logDir);
      workers.push(w);
      stoppers.push(() => w.stop(1000));
    }
    const ready = await Promise.all(
      workers.map((w, i) =>
        requestReply<{ established: number; failed: number; ms: number; cpuMs: number }>(
          w,
          {
            type: "start",
            url: service.url,
            prefixes: assignments[i],
            streamsPerConnection: STREAMS_PER_CONNECTION,
          },
          "ready",
          120_000,
        ),
      ),
    );
    const establishMs = Math.max(...ready.map((r) => r.ms));
    const failed = ready.reduce((n, r) => n + r.failed, 0);
    if (failed > 0) throw new Error(`${failed} of ${watchers} watch streams failed to start`);
    const established = memoryOf(service.pid);

    // Writes: warm-up, then the measured window.
    const writer = spawnNode("watch-writer", WRITER, logDir);
    stoppers.push(() => writer.stop(1000));
    const rss = sampleRss(service.pid);
    stoppers.push(async () => {
      rss.stop();
    });
    const cpu0 = cpuSecondsOf(service.pid);
    const redisCpu0 = backend.redis ? cpuSecondsOf(backend.redis.pid) : 0;
    const clientPids = [...workers, writer].map((m) => m.pid);
    const clientCpu = () => clientPids.reduce((n, pid) => n + cpuSecondsOrZero(pid), 0);
    const clientCpu0 = clientCpu();
    const cores = coreBusy();
    const t0 = Date.now();
    const written = await requestReply<WriterResult>(
      writer,
      {
        type: "run",
        url: service.url,
        keys,
        rate,
        warmupSeconds: warmup,
        durationSeconds: seconds,
      },
      "done",
      (warmup + seconds + 60) * 1000,
    );
    const writeSeconds = (Date.now() - t0) / 1000;
    const serviceCpu = (cpuSecondsOf(service.pid) - cpu0) / writeSeconds;
    const redisCpu = backend.redis
      ? (cpuSecondsOf(backend.redis.pid) - redisCpu0) / writeSeconds
      : 0;
    const busy = cores.stop();
    const ownLoadCpu = (clientCpu() - clientCpu0) / writeSeconds;
    log(
      `    window ${Math.round(written.windowStartUs)}..${Math.round(written.windowEndUs)} us (CLOCK_MONOTONIC); service pid ${service.pid}`,
    );

    // Writes of the window, and how many deliveries they owe.
    const inWindow = written.writes.filter(
      ([, sendUs]) => sendUs >= written.windowStartUs && sendUs < written.windowEndUs,
    );
    const expected = inWindow.length * perPrefix;
    const totalExpected = written.writes.length * perPrefix;

    // Drain: wait until every delivery arrived, or nothing more arrives for 2 s.
    const drainDeadline = Date.now() + 30_000;
    let lastTotal = -1;
    let stableSince = Date.now();
    for (;;) {
      const counts = await Promise.all(
        workers.map((w) =>
          requestReply<{ received: number }>(w, { type: "count" }, "count", 10_000),
        ),
      );
      const total = counts.reduce((n, c) => n + c.received, 0);
      if (total >= totalExpected) break;
      if (total !== lastTotal) {
        lastTotal = total;
        stableSince = Date.now();
      } else if (Date.now() - stableSince > 2000) break;
      if (Date.now() > drainDeadline) break;
      await sleep(100);
    }
    const memory = rss.stop();

    const acks = inWindow.map(([rev, , ackUs]) => [rev, ackUs] as const);
    const putLatency = summarize(inWindow.map(([, sendUs, ackUs]) => ackUs - sendUs));
    const results = await Promise.all(
      workers.map((w) => requestReply<WorkerResult>(w, { type: "finish", acks }, "result", 60_000)),
    );
    const ackHist = new LogHistogram();
    const sendHist = new LogHistogram();
    let deliveries = 0;
    let beforeAck = 0;
    let outOfOrder = 0;
    const ended: Record<string, number> = {};
    for (const r of results) {
      ackHist.merge(r.ackToReceipt);
      sendHist.merge(r.sendToReceipt);
      deliveries += r.deliveries;
      beforeAck += r.beforeAck;
      outOfOrder += r.outOfOrder;
      for (const [k, v] of Object.entries(r.ended)) ended[k] = (ended[k] ?? 0) + v;
    }
    const windowSeconds = (written.windowEndUs - written.windowStartUs) / 1e6;
    const achievedRate = inWindow.length / windowSeconds;
    const writeErrors = Object.entries(written.errors)
      .map(([k, v]) => `${k}:${v}`)
      .join(" ");
    const endedText = Object.entries(ended)
      .map(([k, v]) => `${v} ended with grpc-status ${k}`)
      .join(", ");
    const p = (h: LogHistogram, q: number) => h.percentile(q) / 1000;
    // ack -> receipt: events that arrived before the writer had its ack count as 0.
    const fromAck = (q: number) => {
      const rank = Math.max(1, Math.ceil(q * (ackHist.total + beforeAck)));
      if (rank <= beforeAck) return 0;
      return ackHist.percentile((rank - beforeAck) / ackHist.total) / 1000;
    };
    const pct = (x: number) => `${(x * 100).toFixed(0)}%`;
    const notes = [
      `${count(P)} prefix(es) × ${count(perPrefix)} watcher(s)`,
      `writes ${count(rate)}/s asked, ${formatNumber(achievedRate)}/s achieved${written.skipped ? ` (${written.skipped} skipped: 1000 in flight)` : ""}${writeErrors ? `, write errors ${writeErrors}` : ""}`,
      `delivered ${((deliveries / Math.max(1, expected)) * 100).toFixed(1)}% of ${count(expected)}`,
      `send→receipt p50 ${p(sendHist, 0.5).toFixed(2)} / p99 ${p(sendHist, 0.99).toFixed(2)} / max ${(sendHist.max / 1000).toFixed(1)} ms`,
      `Put send→ack p50 ${(putLatency.p50 / 1000).toFixed(2)} / p99 ${(putLatency.p99 / 1000).toFixed(2)} ms`,
      `${pct(beforeAck / Math.max(1, deliveries))} of events arrived before the writer had its ack (counted as 0)`,
      `RSS ${baseline.rssMb.toFixed(0)} MiB idle → ${established.rssMb.toFixed(0)} MiB with watchers → max ${memory.maxRssMb.toFixed(0)} MiB writing (peak ${memory.hwmMb.toFixed(0)})`,
      `core 0 busy ${pct(busy.get(SERVER_CORE) ?? Number.NaN)} (service ${pct(serviceCpu)}${backend.redis ? `, Redis ${pct(redisCpu)}` : ""}), core 1 busy ${pct(busy.get(LOAD_CORE) ?? Number.NaN)} (watchers + writer ${pct(ownLoadCpu)})`,
      `${count(watchers)} streams established in ${(establishMs / 1000).toFixed(1)} s`,
      ...(outOfOrder ? [`${outOfOrder} events out of order`] : []),
      ...(endedText ? [endedText] : []),
    ];
    const row: BenchRow = {
      group: GROUP,
      scenario: `${layout.name} (${backend.label})`,
      subject: `latchkey (${backend.label})`,
      concurrency: watchers,
      throughput: deliveries / windowSeconds,
      unit: "events/s",
      p50Ms: fromAck(0.5),
      p99Ms: fromAck(0.99),
      note: notes.join("; "),
    };
    const summary = `${layout.name} ${backend.label} W=${watchers}: ${formatNumber(row.throughput)} events/s, ack→receipt p50 ${row.p50Ms?.toFixed(2)} p99 ${row.p99Ms?.toFixed(2)} ms; ${notes.slice(1).join("; ")}`;
    return { row, summary };
  } finally {
    for (const stop of stoppers.reverse()) await stop().catch(() => {});
  }
}

export const watch: Scenario = {
  name: "watch",
  async run(options: BenchOptions): Promise<BenchRow[]> {
    const logDir = join(options.workDir, "logs");
    const { mkdirSync } = await import("node:fs");
    mkdirSync(logDir, { recursive: true });
    const redis = await startRedis({ core: SERVER_CORE, logDir });
    const rows: BenchRow[] = [];
    try {
      const cells: [Layout, number, { label: string; redis?: RedisServer }][] = [];
      for (const layout of LAYOUTS) {
        for (const w of WATCHER_COUNTS) cells.push([layout, w, { label: "redis", redis }]);
      }
      // The memory backend at the largest count, for the backend's share of the cost.
      if (!options.quick) {
        for (const layout of LAYOUTS) cells.push([layout, 10_000, { label: "memory" }]);
      }
      for (const [layout, w, backend] of cells) {
        const { row, summary } = await runCell(options, backend, layout, w, logDir);
        options.log(`  ${summary}`);
        rows.push(row);
      }
    } finally {
      await redis.stop();
    }
    options.note?.(
      GROUP,
      [
        `- conc. = concurrent Watch streams (watchers), in ${MAX_WORKERS} processes on core 1 (fewer when fewer watchers), ≤${STREAMS_PER_CONNECTION} streams per HTTP/2 connection; the writer (Put, open loop) is another process on core 1.`,
        `- spread: watchers spread evenly over min(W, ${formatNumber(SPREAD_PREFIXES)}) prefixes, ${formatNumber(SPREAD_RATE)} writes/s round-robin over one key per prefix: each write reaches W/P watchers (10 000 watchers → 10 per prefix → 10 000 deliveries/s). hot: every watcher on one prefix, write rate min(1 000, ${formatNumber(HOT_DELIVERIES)}/W) per second, each write reaching all W watchers.`,
        "- throughput = events received per second in the measured window (deliveries); p50/p99 = time from the writer receiving the Put's ack to a watcher receiving the event (CLOCK_MONOTONIC, shared by all processes), 0 when the event arrived first. Under load the ack queues behind the fan-out on the same core, so read it with send→receipt (note), which adds the Put's own latency: the truth lies between the two.",
        `- Each cell: a fresh service, watchers established, ${options.quick ? 1 : 2} s of writes as warm-up, then ${options.durationSeconds} s measured; RSS from /proc/<pid>/status (VmRSS sampled every 200 ms, VmHWM = peak).`,
      ].join("\n"),
    );
    return rows;
  },
};
