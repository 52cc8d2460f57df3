/**
 * The shape every benchmark scenario reports in. `npm run bench` runs the
 * scenarios in bench/scenarios/ and prints one table per group, with each
 * Latchkey row next to the peer measured in the same run and their ratio.
 */

/** One measured configuration. */
export interface BenchRow {
  /** Table the row belongs to, e.g. "KV (gRPC unary, one core)". */
  readonly group: string;
  /** What was driven, e.g. "Get", "Put if version". */
  readonly scenario: string;
  /** Who served it, e.g. "latchkey (redis)", "etcd 3.4", "redis-benchmark". */
  readonly subject: string;
  /** Concurrent requests in flight (or watchers, or clients). */
  readonly concurrency: number;
  /** Completed operations per second. */
  readonly throughput: number;
  readonly unit: string;
  readonly p50Ms?: number | undefined;
  readonly p99Ms?: number | undefined;
  /** Anything a reader needs to interpret the row (RSS, errors, compression ratio...). */
  readonly note?: string | undefined;
  /** Subject this row is compared with (same group, scenario and concurrency). */
  readonly peerOf?: string | undefined;
  /**
   * Subject of a lower-bound reference row (e.g. raw Redis under the Redis
   * backend), same group, scenario and concurrency: the table also shows
   * this row's throughput as a fraction of it.
   */
  readonly floor?: string | undefined;
}

export interface BenchOptions {
  /** Seconds per measurement. */
  readonly durationSeconds: number;
  /**
   * Short runs (the runner's --quick: 3 s cells, one round, fewer watch
   * cells). Peers that are not installed are skipped with a note either way.
   */
  readonly quick: boolean;
  /** Where scenario scratch files go (gitignored). */
  readonly workDir: string;
  readonly log: (line: string) => void;
  /**
   * Explanations printed above a group's table (what a row measures, the
   * layout, caveats); optional for scenarios and for callers.
   */
  readonly note?: ((group: string, text: string) => void) | undefined;
  /** Repetitions of each measurement, alternating subjects (default 1). */
  readonly rounds?: number | undefined;
}

export interface Scenario {
  readonly name: string;
  run(options: BenchOptions): Promise<BenchRow[]>;
}
