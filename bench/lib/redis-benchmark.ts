/**
 * Raw Redis as the floor: redis-benchmark (Redis 7 prints p50/p99 itself in
 * --csv mode), pinned to the load core, one request in flight per client (no
 * pipelining) so "clients" means the same as h2load's requests in flight.
 * redis-benchmark runs a request count, not a duration: a short probe sizes
 * the count for the wanted duration.
 */
import { runCommand } from "./proc.js";

export interface RedisBenchmarkRow {
  readonly test: string;
  readonly rps: number;
  readonly avgMs: number;
  readonly minMs: number;
  readonly p50Ms: number;
  readonly p95Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
}

/** Splits one CSV line (double-quoted fields, "" escapes). */
function csvFields(line: string): string[] {
  const fields: string[] = [];
  let i = 0;
  while (i <= line.length) {
    if (line[i] === '"') {
      let value = "";
      i++;
      while (i < line.length) {
        if (line[i] === '"' && line[i + 1] === '"') {
          value += '"';
          i += 2;
        } else if (line[i] === '"') {
          i++;
          break;
        } else value += line[i++];
      }
      fields.push(value);
      i++; // the comma
    } else {
      const end = line.indexOf(",", i);
      fields.push(line.slice(i, end < 0 ? line.length : end));
      i = end < 0 ? line.length + 1 : end + 1;
    }
  }
  return fields;
}

/** Parses `redis-benchmark --csv` output (Redis 7 columns). */
export function parseRedisBenchmarkCsv(text: string): RedisBenchmarkRow[] {
  const lines = text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l.startsWith('"'));
  const header = lines.shift();
  if (!header) throw new Error(`redis-benchmark output not understood:\n${text.slice(-1000)}`);
  const names = csvFields(header);
  const col = (name: string) => {
    const i = names.indexOf(name);
    if (i < 0) throw new Error(`redis-benchmark --csv: no column ${name} in ${header}`);
    return i;
  };
  const idx = {
    test: col("test"),
    rps: col("rps"),
    avg: col("avg_latency_ms"),
    min: col("min_latency_ms"),
    p50: col("p50_latency_ms"),
    p95: col("p95_latency_ms"),
    p99: col("p99_latency_ms"),
    max: col("max_latency_ms"),
  };
  return lines.map((line) => {
    const f = csvFields(line);
    const num = (i: number) => Number(f[i]);
    return {
      test: f[idx.test] ?? "",
      rps: num(idx.rps),
      avgMs: num(idx.avg),
      minMs: num(idx.min),
      p50Ms: num(idx.p50),
      p95Ms: num(idx.p95),
      p99Ms: num(idx.p99),
      maxMs: num(idx.max),
    };
  });
}

export interface RedisBenchmarkRun {
  readonly port: number;
  readonly core: number;
  readonly clients: number;
  readonly seconds: number;
  /** A built-in test ("get", "set") or a command line (e.g. ["EVALSHA", sha, "1", "k"]). */
  readonly test: string | readonly string[];
  /** Value size for SET / GET. */
  readonly dataSize: number;
}

export async function runRedisBenchmark(run: RedisBenchmarkRun): Promise<RedisBenchmarkRow> {
  const once = async (requests: number) => {
    const args = [
      "-h",
      "127.0.0.1",
      "-p",
      String(run.port),
      "-c",
      String(run.clients),
      "-n",
      String(requests),
      "-P",
      "1",
      "-d",
      String(run.dataSize),
      "--csv",
      ...(typeof run.test === "string" ? ["-t", run.test] : run.test),
    ];
    const { stdout } = await runCommand("redis-benchmark", args, {
      core: run.core,
      timeoutMs: (run.seconds * 4 + 60) * 1000,
    });
    const row = parseRedisBenchmarkCsv(stdout)[0];
    if (!row) throw new Error(`redis-benchmark printed no result:\n${stdout}`);
    return row;
  };
  const probe = await once(Math.max(2000, run.clients * 100));
  return once(Math.max(2000, Math.round(probe.rps * run.seconds)));
}

export async function redisBenchmarkVersion(): Promise<string> {
  const { stdout } = await runCommand("redis-benchmark", ["--version"], { check: false });
  return stdout.trim();
}
