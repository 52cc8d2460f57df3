/**
 * Distributed locks: Latchkey's LockService (Redis backend, Redlock over 3
 * lock nodes) next to etcd 3.4's lock service (v3lock Lock/Unlock) and, as a
 * reference, the `redlock` package used in-process against the same 3 nodes.
 *
 * Layout: the state Redis, 3 more redis-server processes as lock nodes, the
 * Latchkey service and etcd all pinned to core 0. The 64 workers run in one
 * Node process pinned to core 1 (BENCH_LOCKS_PROCESSES spreads them over
 * more): the Latchkey and etcd clients are the same code (@grpc/grpc-js with
 * @grpc/proto-loader, one HTTP/2 connection per process); redlock runs in the
 * same process, straight to the nodes. One process is the least
 * client-bound layout on one core: measured here, 4 processes spent 1.5-3x
 * the client CPU per cycle of one (context switches, fewer streams per
 * write) and the servers 10-30% more, for lower throughput. The grpc-js
 * client needs ~300-350 us of CPU per acquire+release cycle, so one client
 * core measures at most ~3 000 cycles/s: enough for etcd and Latchkey
 * today, not for a subject twice as fast as etcd.
 *
 *  - acquire+release, 64 names: every worker loops on its own name, acquire
 *    then release at once; cycles/s and the latency of a cycle (acquire sent
 *    -> release returned).
 *  - hand-off, 1 hot name: every worker loops on the same name with a
 *    blocking acquire (Latchkey wait_timeout, etcd Lock, redlock's retry
 *    loop) and releases as soon as it holds it; hand-offs/s = grants whose
 *    acquire returned in the window, hand-off latency = from the previous
 *    holder SENDING its release to the next holder's acquire RETURNING
 *    (CLOCK_MONOTONIC, shared by the processes: the time the lock sat unused
 *    between two holders, as clients see it). The same from the release
 *    RETURNING is in the note.
 *
 * Every grant is checked: no hold may start before the previous one's
 * release was sent (mutual exclusion as the clients saw it) and Latchkey's
 * fencing tokens must strictly increase in grant order. Each row's note has
 * the CPU time per operation of the servers and of the client: unlike
 * throughput, it hardly depends on what else runs on the machine.
 *
 * Knobs for investigations (environment):
 *   BENCH_LOCKS_SUBJECTS=latchkey,etcd,redlock   subjects to run
 *   BENCH_LOCKS_MODES=distinct,hot               scenarios to run
 *   BENCH_LOCKS_PROCESSES=1                      client processes (redlock's
 *       hot name livelocks with more than one: see the README)
 *   BENCH_LOCKS_CLIENT_NODE_ARGS="--cpu-prof --cpu-prof-dir=..."   client flags
 *   BENCH_SERVICE_NODE_ARGS="--cpu-prof --cpu-prof-dir=..."        service flags
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type EtcdServer, etcdVersion, startEtcd } from "../lib/etcd.js";
import { type LatchkeyServer, startLatchkey } from "../lib/latchkey.js";
import type { ClientTarget, SubjectKind } from "../lib/lock-clients.js";
import {
  addCounts,
  analyzeHandoffs,
  formatCounts,
  type Hold,
  latencyMs,
} from "../lib/lock-stats.js";
import type { LockWorkerPrepare, LockWorkerResult } from "../lib/lock-worker.js";
import { errorDelta, fetchText, parseCodeCounts } from "../lib/metrics.js";
import { REPO_ROOT } from "../lib/paths.js";
import { type Managed, requestReply, spawnManaged } from "../lib/proc.js";
import { coreBusy, cpuSecondsOrZero } from "../lib/procfs.js";
import { type RedisServer, startRedis } from "../lib/redis.js";
import { mean, spread } from "../lib/stats.js";
import { formatNumber } from "../lib/table.js";
import type { BenchOptions, BenchRow, Scenario } from "../types.js";

export const GROUP = "Locks (3 Redis lock nodes, server on one core)";
const SERVER_CORE = 0;
const LOAD_CORE = 1;
const WORKERS = 64;
/** Client processes on the load core sharing the workers (see the file comment). */
const PROCESSES = Math.max(1, Math.floor(Number(process.env.BENCH_LOCKS_PROCESSES ?? 1)) || 1);
/** Lock validity (Latchkey ttl, redlock duration); etcd locks live as long as the worker's lease. */
const TTL_MS = 5000;
/** Latchkey's LATCHKEY_MAX_LOCK_TTL_MS: a restarted lock node votes after this (fresh nodes at once). */
const MAX_LOCK_TTL_MS = 10_000;
/** How long a contended acquire may wait (Latchkey wait_timeout; redlock retries for as long). */
const WAIT_MS = 10_000;
const REDLOCK_RETRY_DELAY_MS = 10;
const REDLOCK_RETRY_JITTER_MS = 10;

const WORKER = fileURLToPath(new URL("../lib/lock-worker.ts", import.meta.url));

type Mode = "distinct" | "hot";
const SCENARIO: Record<Mode, string> = {
  distinct: "acquire+release, 64 names",
  hot: "hand-off, 1 hot name (64 clients)",
};
const LATCHKEY = "latchkey (redis, 3 nodes)";
const REDLOCK = "redlock (in-process)";

interface Subject {
  readonly kind: SubjectKind;
  readonly name: string;
  readonly target: Omit<ClientTarget, "kind">;
  /** Servers whose CPU is reported (label, pid). */
  readonly servers: readonly (readonly [string, number])[];
}

/** Where the CPU went in one measured window (shares of one core). */
interface CpuSample {
  readonly core0: number;
  readonly core1: number;
  readonly servers: readonly (readonly [string, number])[];
  readonly clients: number;
  /** CPU time of the servers / of the clients per operation, us. */
  readonly serverUsPerOp: number;
  readonly clientUsPerOp: number;
}

/** Means over the rounds: core busy, who used it, CPU per operation. */
function formatCpu(samples: readonly CpuSample[], mode: Mode, processes: number): string {
  const avg = (f: (s: CpuSample) => number) => mean(samples.map(f));
  const labels = samples[0]?.servers.map(([l]) => l) ?? [];
  const servers = labels
    .map((l, i) => `${l} ${pct(avg((s) => s.servers[i]?.[1] ?? Number.NaN))}`)
    .join(", ");
  const what = mode === "distinct" ? "cycle" : "hand-off";
  return `core 0 busy ${pct(avg((s) => s.core0))} (${servers}), core 1 busy ${pct(avg((s) => s.core1))} (${processes} client process(es) ${pct(avg((s) => s.clients))}); CPU per ${what}: servers ${Math.round(avg((s) => s.serverUsPerOp))} us, client ${Math.round(avg((s) => s.clientUsPerOp))} us`;
}

/** Everything measured for one (mode, subject) over the rounds. */
interface Cell {
  throughput: number[];
  latencyUs: number[];
  secondaryUs: number[];
  /** Hand-off latency of grants to another client only. */
  otherUs: number[];
  acquireUs: number[];
  releaseUs: number[];
  errors: Record<string, number>;
  releaseProblems: Record<string, number>;
  notAcquired: number;
  overlaps: number;
  tokenRegressions: number;
  beforeReleaseDone: number;
  handoffsChecked: number;
  longestRun: number;
  workersServed: number[];
  cpu: CpuSample[];
  /** Grants (in the window) that went to another client than the previous one. */
  toOther: number;
  grants: number;
  /** Latchkey: lock-node acquire attempts by outcome (granted, held, split, no_quorum). */
  votes: Record<string, number>;
  /** Latchkey: non-OK LockService calls by code, as the service counted them. */
  serverErrors: Record<string, number>;
}

const newCell = (): Cell => ({
  throughput: [],
  latencyUs: [],
  secondaryUs: [],
  otherUs: [],
  acquireUs: [],
  releaseUs: [],
  errors: {},
  releaseProblems: {},
  notAcquired: 0,
  overlaps: 0,
  tokenRegressions: 0,
  beforeReleaseDone: 0,
  handoffsChecked: 0,
  longestRun: 0,
  workersServed: [],
  cpu: [],
  toOther: 0,
  grants: 0,
  votes: {},
  serverErrors: {},
});

const nowUs = () => Number(process.hrtime.bigint()) / 1000;
/** push(...from) without the argument limit (runs have 100 000s of samples). */
function append(into: number[], from: ArrayLike<number>): void {
  for (let i = 0; i < from.length; i++) into.push(from[i]!);
}
const pct = (x: number | undefined) =>
  x === undefined || !Number.isFinite(x) ? "?" : `${(x * 100).toFixed(0)}%`;

/**
 * Checks that the client processes read the same monotonic clock as this
 * one: each answer must fall between the request's send and the reply's
 * receipt (a per-process clock would be off by the process's start time).
 */
async function checkClock(workers: readonly Managed[]): Promise<string> {
  let worst = 0;
  for (const w of workers) {
    // The first answer waits for the process to load: time the second.
    await requestReply(w, { type: "clock" }, "clock", 30_000);
    const before = nowUs();
    const { us } = await requestReply<{ us: number }>(w, { type: "clock" }, "clock", 10_000);
    const after = nowUs();
    if (us < before || us > after) {
      throw new Error(
        `${w.name}: its monotonic clock (${us} us) is not this process's (${before}..${after} us): hand-off latency across processes would be meaningless`,
      );
    }
    worst = Math.max(worst, after - before);
  }
  return `clock check: every client's CLOCK_MONOTONIC reading fell inside the parent's request/reply interval (widest ${(worst / 1000).toFixed(2)} ms)`;
}

/** Latchkey's lock-node acquire outcomes (granted, held, split, no_quorum) and LockService calls by code. */
async function latchkeyCounters(server: LatchkeyServer) {
  const text = await fetchText(`http://127.0.0.1:${server.adminPort}/metrics`);
  return {
    outcomes: parseCodeCounts(text, "latchkey_lock_node_acquires_total", "outcome"),
    codes: parseCodeCounts(text, "latchkey_rpc_calls_total", "code", {
      service: "latchkey.v1.LockService",
    }),
  };
}

export const locks: Scenario = {
  name: "locks",
  async run(options: BenchOptions): Promise<BenchRow[]> {
    const log = options.log;
    const note = (text: string) => options.note?.(GROUP, text);
    const logDir = join(options.workDir, "logs");
    mkdirSync(logDir, { recursive: true });
    const rounds = options.rounds ?? 1;
    const seconds = options.durationSeconds;
    // 2 s even with --quick: a fresh service needs it (1 s left Latchkey at half speed).
    const warmup = 2;
    const stoppers: (() => Promise<void>)[] = [];
    try {
      log("locks: starting the state Redis, 3 lock-node Redis, Latchkey and etcd on core 0...");
      const state = await startRedis({ core: SERVER_CORE, logDir });
      stoppers.push(() => state.stop());
      const nodes: RedisServer[] = [];
      for (let i = 0; i < 3; i++) {
        const node = await startRedis({ core: SERVER_CORE, logDir });
        stoppers.push(() => node.stop());
        nodes.push(node);
      }
      const nodeUrls = nodes.map((n) => n.url);
      const service = await startLatchkey({
        core: SERVER_CORE,
        redisUrl: state.url,
        env: {
          LATCHKEY_LOCK_NODES: nodeUrls.join(","),
          LATCHKEY_MAX_LOCK_TTL_MS: String(MAX_LOCK_TTL_MS),
        },
        logDir,
        log,
        label: "locks",
      });
      stoppers.push(() => service.stop());
      const etcdVer = await etcdVersion();
      let etcd: EtcdServer | undefined;
      if (etcdVer) {
        etcd = await startEtcd({ core: SERVER_CORE, logDir });
        stoppers.push(() => etcd!.stop());
      } else {
        note(
          "- etcd is not installed (Debian `etcd-server`): the etcd rows and ratios are skipped.",
        );
        log("locks: no etcd binary: skipping the etcd rows");
      }
      const etcdName = etcdVer?.startsWith("3.4")
        ? "etcd 3.4 v3lock"
        : `etcd ${etcdVer ?? ""} v3lock`.trim();

      const redisPids: [string, number][] = [
        ["state Redis", state.pid],
        ...nodes.map((n, i): [string, number] => [`node ${i + 1}`, n.pid]),
      ];
      const common = {
        ttlMs: TTL_MS,
        waitMs: WAIT_MS,
        redlockRetryDelayMs: REDLOCK_RETRY_DELAY_MS,
        redlockRetryJitterMs: REDLOCK_RETRY_JITTER_MS,
      };
      const subjects: Subject[] = [
        {
          kind: "latchkey",
          name: LATCHKEY,
          target: { ...common, address: `127.0.0.1:${service.port}` },
          servers: [["service", service.pid], ...redisPids],
        },
      ];
      if (etcd) {
        subjects.push({
          kind: "etcd",
          name: etcdName,
          target: { ...common, address: `127.0.0.1:${etcd.port}` },
          servers: [["etcd", etcd.pid]],
        });
      }
      subjects.push({
        kind: "redlock",
        name: REDLOCK,
        target: { ...common, nodes: nodeUrls },
        servers: redisPids.slice(1),
      });

      const procs: Managed[] = [];
      for (let i = 0; i < PROCESSES; i++) {
        // BENCH_LOCKS_CLIENT_NODE_ARGS adds node flags to the clients (e.g. --cpu-prof).
        const nodeArgs = (process.env.BENCH_LOCKS_CLIENT_NODE_ARGS ?? "")
          .split(/\s+/)
          .filter(Boolean);
        const w = spawnManaged(
          `lock-client-${i}`,
          process.execPath,
          [...nodeArgs, "--import", "tsx", WORKER],
          {
            core: LOAD_CORE,
            cwd: REPO_ROOT,
            ipc: true,
            logFile: join(logDir, `lock-client-${i}.log`),
          },
        );
        stoppers.push(() => w.stop(2000));
        procs.push(w);
      }
      const clockNote = await checkClock(procs);
      log(`locks: ${clockNote}`);
      const share = (i: number, of: number) =>
        Array.from({ length: WORKERS }, (_, w) => w).filter((w) => w % of === i);

      const cells = new Map<string, Cell>();
      const cellOf = (mode: Mode, subject: string) => {
        const k = `${mode}/${subject}`;
        let c = cells.get(k);
        if (!c) {
          c = newCell();
          cells.set(k, c);
        }
        return c;
      };
      let cellNo = 0;

      const runCell = async (mode: Mode, subject: Subject, round: number) => {
        cellNo++;
        const prefix = `bench/locks/r${round}c${cellNo}`;
        const leaseTtlSeconds = Math.max(
          60,
          Math.ceil(3 * (warmup + seconds) + WAIT_MS / 1000 + 30),
        );
        const clients = procs;
        await Promise.all(
          clients.map((p, i) => {
            const workers = share(i, clients.length);
            const message: LockWorkerPrepare = {
              type: "prepare",
              target: { kind: subject.kind, ...subject.target },
              workers,
              names: workers.map((w) => (mode === "hot" ? `${prefix}/hot` : `${prefix}/n${w}`)),
              leaseTtlSeconds,
              holds: mode === "hot",
            };
            return requestReply(p, message, "prepared", 60_000);
          }),
        );
        const before = subject.kind === "latchkey" ? await latchkeyCounters(service) : undefined;
        const startUs = nowUs() + 200_000;
        const fromUs = startUs + warmup * 1e6;
        const toUs = fromUs + seconds * 1e6;
        // CPU of the servers and clients over the measured window.
        const pids = [
          ...subject.servers,
          ...clients.map((p, i): [string, number] => [`client ${i}`, p.pid]),
        ];
        let cpu0: number[] = [];
        let cores: ReturnType<typeof coreBusy> | undefined;
        const sampler = setTimeout(
          () => {
            cpu0 = pids.map(([, pid]) => cpuSecondsOrZero(pid));
            cores = coreBusy();
          },
          (fromUs - nowUs()) / 1000,
        );
        let ender: NodeJS.Timeout | undefined;
        const endSample = new Promise<{ cpu: number[]; busy: Map<number, number> }>((resolve) => {
          ender = setTimeout(
            () =>
              resolve({
                cpu: pids.map(([, pid]) => cpuSecondsOrZero(pid)),
                busy: cores?.stop() ?? new Map(),
              }),
            (toUs - nowUs()) / 1000,
          );
        });
        let results: LockWorkerResult[];
        try {
          results = await Promise.all(
            clients.map((p) =>
              requestReply<LockWorkerResult>(
                p,
                { type: "run", startUs, fromUs, toUs },
                "result",
                (warmup + seconds + WAIT_MS / 1000 + 60) * 1000,
              ),
            ),
          );
        } finally {
          clearTimeout(sampler);
          clearTimeout(ender);
        }
        const cpuAtEnd = await endSample;
        const after = subject.kind === "latchkey" ? await latchkeyCounters(service) : undefined;

        const c = cellOf(mode, subject.name);
        const windowSeconds = (toUs - fromUs) / 1e6;
        for (const r of results) {
          addCounts(c.errors, r.errors);
          addCounts(c.releaseProblems, r.releaseProblems);
          c.notAcquired += r.notAcquired;
        }
        let summary: string;
        let ops: number;
        if (mode === "distinct") {
          const cycles = results.reduce((n, r) => n + r.cycles, 0);
          ops = cycles;
          const throughput = cycles / windowSeconds;
          c.throughput.push(throughput);
          for (const r of results) {
            append(c.latencyUs, r.cycleUs);
            append(c.acquireUs, r.acquireUs);
            append(c.releaseUs, r.releaseUs);
          }
          const l = latencyMs(results.flatMap((r) => r.cycleUs));
          summary = `${formatNumber(throughput)} cycles/s, cycle p50 ${l.p50.toFixed(2)} p99 ${l.p99.toFixed(2)} ms`;
        } else {
          const holds: Hold[] = [];
          for (const r of results) {
            for (let i = 0; i < r.holds.length; i += 5) {
              holds.push({
                worker: r.holds[i]!,
                acquiredUs: r.holds[i + 1]!,
                releaseSentUs: r.holds[i + 2]!,
                releaseDoneUs: r.holds[i + 3]!,
                token: r.holds[i + 4]!,
              });
            }
          }
          const a = analyzeHandoffs(holds, fromUs, toUs, subject.kind === "latchkey");
          ops = a.handoffs;
          const throughput = a.handoffs / windowSeconds;
          c.throughput.push(throughput);
          append(c.latencyUs, a.fromReleaseSentUs);
          append(c.secondaryUs, a.fromReleaseDoneUs);
          append(c.otherUs, a.toOtherFromReleaseSentUs);
          c.overlaps += a.overlaps;
          c.tokenRegressions += a.tokenRegressions;
          c.beforeReleaseDone += a.beforeReleaseDone;
          c.handoffsChecked += holds.length;
          c.longestRun = Math.max(c.longestRun, a.longestRun);
          c.toOther += a.toOther;
          c.grants += a.handoffs;
          c.workersServed.push(a.workersServed);
          const l = latencyMs(a.fromReleaseSentUs);
          summary = `${formatNumber(throughput)} hand-offs/s, hand-off p50 ${l.p50.toFixed(2)} p99 ${l.p99.toFixed(2)} ms, ${a.workersServed} workers served, ${a.overlaps} overlaps`;
        }
        const usedCpu = pids.map(
          ([label], i) => [label, (cpuAtEnd.cpu[i]! - (cpu0[i] ?? 0)) / windowSeconds] as const,
        );
        const servers = usedCpu.filter(([label]) => !label.startsWith("client"));
        const clientCpu = usedCpu
          .filter(([label]) => label.startsWith("client"))
          .reduce((n, [, v]) => n + v, 0);
        // CPU time per operation does not depend on what else shares the core.
        const serverCpu = servers.reduce((n, [, v]) => n + v, 0);
        const perOp = (share: number) =>
          ops > 0 ? (share * windowSeconds * 1e6) / ops : Number.NaN;
        const sample: CpuSample = {
          core0: cpuAtEnd.busy.get(SERVER_CORE) ?? Number.NaN,
          core1: cpuAtEnd.busy.get(LOAD_CORE) ?? Number.NaN,
          servers,
          clients: clientCpu,
          serverUsPerOp: perOp(serverCpu),
          clientUsPerOp: perOp(clientCpu),
        };
        c.cpu.push(sample);
        if (before && after) {
          for (const [k, v] of after.outcomes) {
            c.votes[k] = (c.votes[k] ?? 0) + v - (before.outcomes.get(k) ?? 0);
          }
          addCounts(c.serverErrors, Object.fromEntries(errorDelta(before.codes, after.codes)));
        }
        log(
          `  ${SCENARIO[mode]} / ${subject.name} (round ${round + 1}): ${summary}; ${formatCpu([sample], mode, clients.length)}`,
        );
      };

      // BENCH_LOCKS_SUBJECTS / BENCH_LOCKS_MODES narrow the run (profiling one subject).
      const pick = (env: string | undefined) => env?.split(",").map((x) => x.trim());
      const onlySubjects = pick(process.env.BENCH_LOCKS_SUBJECTS);
      const onlyModes = pick(process.env.BENCH_LOCKS_MODES);
      const modes = (["distinct", "hot"] as const).filter(
        (m) => !onlyModes || onlyModes.includes(m),
      );
      const measured = subjects.filter((s) => !onlySubjects || onlySubjects.includes(s.kind));
      for (const mode of modes) {
        for (let round = 0; round < rounds; round++) {
          const order = round % 2 === 0 ? measured : [...measured].reverse();
          for (const s of order) await runCell(mode, s, round);
        }
      }

      const rows: BenchRow[] = [];
      for (const mode of modes) {
        for (const s of subjects) {
          const c = cells.get(`${mode}/${s.name}`);
          if (!c) continue;
          const l = latencyMs(c.latencyUs);
          const notes: string[] = [];
          if (c.throughput.length > 1) {
            notes.push(
              `runs ${c.throughput.map((t) => Math.round(t)).join(" / ")} (spread ${(spread(c.throughput) * 100).toFixed(0)}%)`,
            );
          }
          if (mode === "distinct") {
            const acq = latencyMs(c.acquireUs);
            const rel = latencyMs(c.releaseUs);
            notes.push(
              `acquire p50 ${acq.p50.toFixed(2)} / p99 ${acq.p99.toFixed(2)} ms, release p50 ${rel.p50.toFixed(2)} / p99 ${rel.p99.toFixed(2)} ms`,
            );
          } else {
            const d = latencyMs(c.secondaryUs);
            notes.push(
              `from release returned: p50 ${d.p50.toFixed(2)} / p99 ${d.p99.toFixed(2)} ms (${c.beforeReleaseDone} grants arrived before the previous release's answer, counted 0)`,
              `max ${l.max.toFixed(1)} ms`,
              `${pct(c.toOther / c.grants)} of grants went to another client than the previous one, longest streak by one client ${c.longestRun}, clients served per run ${c.workersServed.join(" / ")} of ${WORKERS}`,
            );
            if (c.toOther < c.grants) {
              // Re-takes by the releasing client inflate the rate and deflate the latency.
              const o = latencyMs(c.otherUs);
              notes.push(
                `hand-offs to another client only: ${formatNumber(mean(c.throughput) * (c.toOther / c.grants))}/s, p50 ${o.p50.toFixed(2)} / p99 ${o.p99.toFixed(2)} ms`,
              );
            }
            const tokens =
              s.kind === "latchkey"
                ? `, fencing tokens ${c.tokenRegressions === 0 ? "strictly increasing" : `NOT increasing ${c.tokenRegressions} times`}`
                : "";
            notes.push(
              `safety: ${c.overlaps === 0 ? "no" : `${c.overlaps}`} overlapping holds in ${formatNumber(c.handoffsChecked)} grants${tokens}`,
            );
          }
          const errors = formatCounts(c.errors);
          const problems = formatCounts(c.releaseProblems);
          notes.push(`errors: ${errors || "none"}`);
          if (c.notAcquired)
            notes.push(
              `${c.notAcquired} acquires waited out (${WAIT_MS / 1000} s) without the lock`,
            );
          if (problems) notes.push(`releases not RELEASED: ${problems}`);
          if (s.kind === "latchkey") {
            const server = formatCounts(c.serverErrors);
            notes.push(
              `lock-node attempts: ${formatCounts(c.votes) || "none"}${server ? `; non-OK LockService calls (server side): ${server}` : ""}`,
            );
          }
          notes.push(formatCpu(c.cpu, mode, PROCESSES));
          rows.push({
            group: GROUP,
            scenario: SCENARIO[mode],
            subject: s.name,
            concurrency: WORKERS,
            throughput: mean(c.throughput),
            unit: mode === "distinct" ? "cycles/s" : "hand-offs/s",
            p50Ms: l.p50,
            p99Ms: l.p99,
            note: notes.join("; "),
            peerOf: s.kind === "latchkey" && etcd ? etcdName : undefined,
          });
        }
      }

      note(
        [
          `- Servers on core 0: Latchkey (Redis backend) with its state Redis and LATCHKEY_LOCK_NODES = 3 more redis-server processes (the state Redis is not a lock node), etcd ${etcdVer ?? "(not installed)"} (single member, WAL on local disk). LATCHKEY_MAX_LOCK_TTL_MS=${MAX_LOCK_TTL_MS}; fresh lock nodes vote at once (their run_id is recorded on first sight).`,
          `- Clients: ${WORKERS} workers in ${PROCESSES} Node process(es) on core 1, one HTTP/2 connection per process (one process is the least client-bound layout on one core: more processes cost more CPU per call). Latchkey and etcd are driven by the same code: @grpc/grpc-js + @grpc/proto-loader (Latchkey: proto/latchkey/v1/lock.proto; etcd: a minimal v3lock/lease proto under bench/proto/etcd). Latchkey: Acquire(ttl ${TTL_MS / 1000} s, wait_timeout ${WAIT_MS / 1000} s) / Release(fencing token); etcd: one lease per worker (LeaseGrant before each run), Lock(name, lease) / Unlock(key); redlock: @sesamecare-oss/redlock 1.4.0 in the client process (no service hop) against the same 3 lock nodes, duration ${TTL_MS / 1000} s, retryDelay ${REDLOCK_RETRY_DELAY_MS} ms, retryJitter ${REDLOCK_RETRY_JITTER_MS} ms, retryCount ${Math.ceil(WAIT_MS / REDLOCK_RETRY_DELAY_MS)} (≈ the ${WAIT_MS / 1000} s wait), driftFactor 0.01.`,
          `- acquire+release: each worker loops on its own name (64 names in flight): the same blocking acquire, then release at once; throughput = cycles that ended in the window, p50/p99 = one cycle (acquire sent → release returned).`,
          `- hand-off: every worker loops on one name, releasing as soon as it holds the lock; throughput = grants whose acquire returned in the window; p50/p99 = hand-off latency, from the previous holder SENDING its release to the next holder's acquire RETURNING (CLOCK_MONOTONIC, shared by the client processes; checked at start). Safety: no grant may return before the previous holder sent its release; Latchkey's fencing tokens must strictly increase in grant order.`,
          `- Each cell: ${warmup} s warm-up then ${seconds} s measured, ${rounds} round(s) alternating the subjects' order; throughput = mean of the rounds, latencies pooled. ÷ peer = Latchkey ÷ etcd in the same run. A client core near 100% busy means the figures are capped by the client. "CPU per cycle/hand-off" = CPU seconds of the servers (service + its 4 Redis; etcd; redlock: the 3 nodes) and of the client process(es) in the window ÷ operations: 1 s ÷ that is the most one whole core could do.`,
          `- ${clockNote}.`,
        ].join("\n"),
      );
      return rows;
    } finally {
      for (const stop of stoppers.reverse()) await stop().catch(() => {});
    }
  },
};
