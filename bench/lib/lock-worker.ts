/**
 * A client process of the lock benchmark (several run at once, pinned to the
 * load core): runs a share of the 64 workers against one subject, each in a
 * closed loop "acquire, then release at once", and timestamps everything
 * with CLOCK_MONOTONIC (process.hrtime), which all processes on the host
 * share, so the parent can merge the records of every process.
 *
 * IPC (parent -> worker / worker -> parent):
 *   {type:"clock"}                           -> {type:"clock", us}
 *   {type:"prepare", target, workers, names, leaseTtlSeconds} -> {type:"prepared"}
 *   {type:"run", startUs, fromUs, toUs}      -> {type:"result", ...LockWorkerResult}
 *   any failure                              -> {type:"error", message}
 *
 * Each worker loops from startUs until toUs; a cycle (distinct names) or a
 * hold (one hot name) counts if it ends (cycle) or starts (hold) in
 * [fromUs, toUs). Contended waiters still blocked at toUs finish their turn
 * (get the lock, release it) before the result is sent.
 */
import {
  type ClientTarget,
  classifyError,
  createLockClient,
  type LockClient,
} from "./lock-clients.js";

export interface LockWorkerPrepare {
  readonly type: "prepare";
  readonly target: ClientTarget;
  /** Global worker ids run by this process. */
  readonly workers: readonly number[];
  /** Lock name of each worker (same index as `workers`). */
  readonly names: readonly string[];
  readonly leaseTtlSeconds: number;
  /** Record every hold (contended run) instead of cycle latencies. */
  readonly holds: boolean;
}

export interface LockWorkerResult {
  readonly type: "result";
  /** Cycles (acquire + release) that ended in the window. */
  readonly cycles: number;
  /** acquire sent -> release returned of each cycle in the window, us. */
  readonly cycleUs: number[];
  readonly acquireUs: number[];
  readonly releaseUs: number[];
  /**
   * Contended run: every hold, flattened as [worker, acquiredUs,
   * releaseSentUs, releaseDoneUs, token] per hold.
   */
  readonly holds: number[];
  /** Failed calls by kind ("UNAVAILABLE NO_QUORUM", ...). */
  readonly errors: Record<string, number>;
  /** Acquires that ended without the lock (waited out). */
  readonly notAcquired: number;
  /** Releases that answered something other than released (Latchkey status). */
  readonly releaseProblems: Record<string, number>;
  readonly cpuMs: number;
}

const nowUs = () => Number(process.hrtime.bigint()) / 1000;
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

let client: LockClient | undefined;
let prepared: LockWorkerPrepare | undefined;

async function prepare(msg: LockWorkerPrepare): Promise<void> {
  await client?.close();
  client = createLockClient(msg.target);
  prepared = msg;
  await client.prepare(msg.workers, msg.leaseTtlSeconds);
  // One call per worker outside the window: connections up, code warm.
  await Promise.all(
    msg.workers.map(async (w, i) => {
      const held = await client!.acquire(w, `${msg.names[i]!}/warm`);
      await held?.release();
    }),
  );
}

async function run(startUs: number, fromUs: number, toUs: number): Promise<LockWorkerResult> {
  const c = client;
  const p = prepared;
  if (!c || !p) throw new Error("run before prepare");
  const cycleUs: number[] = [];
  const acquireUs: number[] = [];
  const releaseUs: number[] = [];
  const holds: number[] = [];
  const errors: Record<string, number> = {};
  const releaseProblems: Record<string, number> = {};
  let cycles = 0;
  let notAcquired = 0;
  const count = (into: Record<string, number>, key: string) => {
    into[key] = (into[key] ?? 0) + 1;
  };
  await sleep(Math.max(0, (startUs - nowUs()) / 1000));
  const cpu0 = process.cpuUsage();

  const loop = async (worker: number, name: string) => {
    while (nowUs() < toUs) {
      const t0 = nowUs();
      let held: Awaited<ReturnType<LockClient["acquire"]>>;
      try {
        held = await c.acquire(worker, name);
      } catch (error) {
        count(errors, `acquire ${classifyError(error)}`);
        await sleep(1);
        continue;
      }
      const acquiredUs = nowUs();
      if (!held) {
        notAcquired++;
        continue;
      }
      let problem: string | undefined;
      const sentUs = nowUs();
      try {
        problem = await held.release();
      } catch (error) {
        count(errors, `release ${classifyError(error)}`);
      }
      const t1 = nowUs();
      if (problem) count(releaseProblems, problem);
      if (p.holds) {
        holds.push(worker, acquiredUs, sentUs, t1, held.token);
      } else if (t1 >= fromUs && t1 < toUs) {
        cycles++;
        cycleUs.push(t1 - t0);
        acquireUs.push(acquiredUs - t0);
        releaseUs.push(t1 - sentUs);
      }
    }
  };
  await Promise.all(p.workers.map((w, i) => loop(w, p.names[i]!)));
  const cpu = process.cpuUsage(cpu0);
  return {
    type: "result",
    cycles,
    cycleUs,
    acquireUs,
    releaseUs,
    holds,
    errors,
    notAcquired,
    releaseProblems,
    cpuMs: (cpu.user + cpu.system) / 1000,
  };
}

const reply = (message: object) => process.send?.(message);
const fail = (error: unknown) =>
  reply({
    type: "error",
    message: error instanceof Error ? (error.stack ?? error.message) : String(error),
  });

process.on("message", (msg: { type: string } & Record<string, unknown>) => {
  if (msg.type === "clock") reply({ type: "clock", us: nowUs() });
  else if (msg.type === "prepare") {
    prepare(msg as unknown as LockWorkerPrepare).then(() => reply({ type: "prepared" }), fail);
  } else if (msg.type === "run") {
    run(Number(msg.startUs), Number(msg.fromUs), Number(msg.toUs)).then(reply, fail);
  }
});
process.on("disconnect", () => {
  void client?.close().finally(() => process.exit(0));
});
// A normal exit on SIGTERM, so --cpu-prof (BENCH_LOCKS_CLIENT_NODE_ARGS) writes its profile.
process.on("SIGTERM", () => process.exit(0));
