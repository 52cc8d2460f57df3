/** Percentiles and a mergeable log-bucket histogram for latency samples. */

/** Nearest-rank percentile (q in [0, 1]) of an ascending-sorted array. */
export function percentileSorted(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil(q * sorted.length)));
  return sorted[rank - 1]!;
}

/** Sorts a copy and returns p50 / p99 / p99.9 / max (in the samples' unit). */
export function summarize(samples: ArrayLike<number>): {
  count: number;
  p50: number;
  p99: number;
  p999: number;
  max: number;
} {
  const sorted = Float64Array.from(samples).sort();
  return {
    count: sorted.length,
    p50: percentileSorted(sorted, 0.5),
    p99: percentileSorted(sorted, 0.99),
    p999: percentileSorted(sorted, 0.999),
    max: sorted.length ? sorted[sorted.length - 1]! : Number.NaN,
  };
}

/**
 * Histogram of non-negative values with 1% wide buckets (bucket i holds
 * [1.01^i, 1.01^(i+1)) in the value's unit, values below 1 in bucket 0):
 * percentiles within 1%, a few kB whatever the number of samples, and
 * mergeable across processes (`counts` is plain data).
 */
export class LogHistogram {
  static readonly BASE = Math.log(1.01);
  counts: number[] = [];
  total = 0;
  max = 0;

  record(value: number): void {
    const v = Math.max(value, 1);
    const i = Math.floor(Math.log(v) / LogHistogram.BASE);
    while (this.counts.length <= i) this.counts.push(0);
    this.counts[i]! += 1;
    this.total += 1;
    if (value > this.max) this.max = value;
  }

  merge(other: { counts: readonly number[]; total: number; max: number }): void {
    while (this.counts.length < other.counts.length) this.counts.push(0);
    other.counts.forEach((c, i) => {
      this.counts[i]! += c;
    });
    this.total += other.total;
    if (other.max > this.max) this.max = other.max;
  }

  /** Upper bound of the bucket holding the q-quantile (capped at the maximum seen). */
  percentile(q: number): number {
    if (this.total === 0) return Number.NaN;
    const rank = Math.max(1, Math.ceil(q * this.total));
    let seen = 0;
    for (let i = 0; i < this.counts.length; i++) {
      seen += this.counts[i]!;
      if (seen >= rank) return Math.min(Math.exp((i + 1) * LogHistogram.BASE), this.max);
    }
    return this.max;
  }

  toJSON(): { counts: number[]; total: number; max: number } {
    return { counts: this.counts, total: this.total, max: this.max };
  }
}

export function mean(values: readonly number[]): number {
  return values.length ? values.reduce((a, b) => a + b, 0) / values.length : Number.NaN;
}

/** (max - min) / mean, as a fraction: how far apart repeated runs were. */
export function spread(values: readonly number[]): number {
  if (values.length < 2) return 0;
  return (Math.max(...values) - Math.min(...values)) / mean(values);
}
