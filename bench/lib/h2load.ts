/**
 * Runs h2load (nghttp2-client) against a gRPC unary method and parses its
 * report. h2load sends the body file as the POST body of every request (a
 * framed gRPC message) and reports throughput; it prints only min / max /
 * mean / sd of request time, so percentiles come from its `--log-file`
 * (one line per request of the measured phase: start time in us since the
 * epoch, HTTP status, us until the end of the response).
 *
 * h2load does not read gRPC trailers: an answer with grpc-status != 0 still
 * counts as a success. Callers validate the body with one real call first
 * and compare the server's per-code call counters before and after.
 */
import { readFileSync, rmSync } from "node:fs";
import { runCommand } from "./proc.js";
import { summarize } from "./stats.js";

export interface H2loadReport {
  /** Length of the measured phase, seconds. */
  readonly finishedSeconds: number;
  readonly requestsPerSecond: number;
  readonly requests: {
    readonly total: number;
    readonly started: number;
    readonly done: number;
    readonly succeeded: number;
    readonly failed: number;
    readonly errored: number;
    readonly timeout: number;
  };
  readonly status: {
    readonly s2xx: number;
    readonly s3xx: number;
    readonly s4xx: number;
    readonly s5xx: number;
  };
  /** h2load's own request-time summary, in ms. */
  readonly requestTimeMs: {
    readonly min: number;
    readonly max: number;
    readonly mean: number;
    readonly sd: number;
  };
}

const UNIT_MS: Record<string, number> = { us: 0.001, ms: 1, s: 1000 };

function toMs(text: string): number {
  const m = /^([\d.]+)(us|ms|s)$/.exec(text);
  if (!m) throw new Error(`h2load: cannot read the duration ${JSON.stringify(text)}`);
  return Number(m[1]) * UNIT_MS[m[2]!]!;
}

/** Parses h2load's stdout (nghttp2 1.4x-1.6x format). */
export function parseH2loadOutput(text: string): H2loadReport {
  const finished = /finished in ([\d.]+)(us|ms|s), ([\d.]+) req\/s/.exec(text);
  const requests =
    /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/.exec(
      text,
    );
  const status = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(text);
  const time = /time for request:\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)/.exec(text);
  if (!finished || !requests || !status || !time) {
    throw new Error(`h2load output not understood:\n${text.slice(-1500)}`);
  }
  const n = (m: RegExpExecArray, i: number) => Number(m[i]);
  return {
    finishedSeconds: toMs(`${finished[1]}${finished[2]}`) / 1000,
    requestsPerSecond: Number(finished[3]),
    requests: {
      total: n(requests, 1),
      started: n(requests, 2),
      done: n(requests, 3),
      succeeded: n(requests, 4),
      failed: n(requests, 5),
      errored: n(requests, 6),
      timeout: n(requests, 7),
    },
    status: { s2xx: n(status, 1), s3xx: n(status, 2), s4xx: n(status, 3), s5xx: n(status, 4) },
    requestTimeMs: {
      min: toMs(time[1]!),
      max: toMs(time[2]!),
      mean: toMs(time[3]!),
      sd: toMs(time[4]!),
    },
  };
}

/** Parses an h2load --log-file: request durations in us of the 2xx rows, and the count of others. */
export function parseH2loadLog(text: string): { durationsUs: Float64Array; non2xx: number } {
  const lines = text.split("\n");
  const out = new Float64Array(lines.length);
  let n = 0;
  let non2xx = 0;
  for (const line of lines) {
    if (line === "") continue;
    const first = line.indexOf("\t");
    const second = line.indexOf("\t", first + 1);
    if (first < 0 || second < 0) continue;
    const status = Number(line.slice(first + 1, second));
    const third = line.indexOf("\t", second + 1);
    const duration = Number(line.slice(second + 1, third < 0 ? undefined : third));
    if (status >= 200 && status < 300 && Number.isFinite(duration)) out[n++] = duration;
    else non2xx++;
  }
  return { durationsUs: out.slice(0, n), non2xx };
}

export interface H2loadRun {
  readonly url: string;
  readonly bodyFile: string;
  readonly clients: number;
  /** Max concurrent streams per client (-m): clients x streams = requests in flight. */
  readonly streams: number;
  readonly durationSeconds: number;
  readonly warmupSeconds: number;
  readonly core: number;
  /** Where to write the per-request log (deleted after parsing). */
  readonly logFile: string;
  readonly headers?: Readonly<Record<string, string>>;
}

export interface H2loadResult {
  readonly report: H2loadReport;
  readonly latencyMs: { count: number; p50: number; p99: number; p999: number; max: number };
  /** Raw durations (us), for pooling across rounds. */
  readonly durationsUs: Float64Array;
}

export async function runH2load(run: H2loadRun): Promise<H2loadResult> {
  const headers = {
    "content-type": "application/grpc",
    te: "trailers",
    ...run.headers,
  };
  const args = [
    "-c",
    String(run.clients),
    "-m",
    String(run.streams),
    "-t",
    "1",
    "-D",
    String(run.durationSeconds),
    "--warm-up-time",
    String(run.warmupSeconds),
    "-d",
    run.bodyFile,
    `--log-file=${run.logFile}`,
    ...Object.entries(headers).flatMap(([k, v]) => ["-H", `${k}: ${v}`]),
    run.url,
  ];
  const { stdout } = await runCommand("h2load", args, {
    core: run.core,
    timeoutMs: (run.durationSeconds + run.warmupSeconds + 60) * 1000,
  });
  const report = parseH2loadOutput(stdout);
  const { durationsUs } = parseH2loadLog(readFileSync(run.logFile, "utf8"));
  rmSync(run.logFile, { force: true });
  const s = summarize(durationsUs);
  return {
    report,
    durationsUs,
    latencyMs: {
      count: s.count,
      p50: s.p50 / 1000,
      p99: s.p99 / 1000,
      p999: s.p999 / 1000,
      max: s.max / 1000,
    },
  };
}

export async function h2loadVersion(): Promise<string> {
  const { stdout } = await runCommand("h2load", ["--version"], { check: false });
  return stdout.trim();
}
