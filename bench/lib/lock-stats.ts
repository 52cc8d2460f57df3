/**
 * Pure helpers of the lock benchmark (unit-tested in
 * test/unit/bench-locks.test.ts): turning the clients' records into
 * throughput, hand-off latency and safety checks, and reading the reason of
 * a Latchkey error from grpc-status-details-bin.
 *
 * Times are microseconds of CLOCK_MONOTONIC (process.hrtime), which every
 * process on one Linux host shares, so records from several client
 * processes can be merged and ordered.
 */
import { summarize } from "./stats.js";

/** One grant seen by a client in the contended run. */
export interface Hold {
  /** Worker (client) that held it. */
  readonly worker: number;
  /** When the acquire call returned with the lock. */
  readonly acquiredUs: number;
  /** When the client sent its release (the hold ends here, as the client sees it). */
  readonly releaseSentUs: number;
  /** When the release call returned. */
  readonly releaseDoneUs: number;
  /** Fencing token (Latchkey); 0 when the subject has none. */
  readonly token: number;
}

export interface HandoffAnalysis {
  /** Grants whose acquire returned inside the window. */
  readonly handoffs: number;
  /** Previous holder's release sent -> this grant's acquire returned, us, per grant in the window. */
  readonly fromReleaseSentUs: Float64Array;
  /** Previous holder's release returned -> this grant's acquire returned, us (0 when the grant came first). */
  readonly fromReleaseDoneUs: Float64Array;
  /** Grants that returned before the previous holder's release returned (counted as 0 above). */
  readonly beforeReleaseDone: number;
  /**
   * Grants that returned while another client still held the lock (its
   * release not yet sent): a mutual-exclusion violation unless the earlier
   * hold had expired. Over every record, not only the window.
   */
  readonly overlaps: number;
  /**
   * Grants (in acquire order) whose fencing token did not increase over the
   * previous grant's; only counted when `checkTokens`. Over every record.
   */
  readonly tokenRegressions: number;
  /** Grants in the window that went to another worker than the previous grant. */
  readonly toOther: number;
  /** fromReleaseSentUs of those grants only (a real hand-off, not a re-take by the releaser). */
  readonly toOtherFromReleaseSentUs: Float64Array;
  /** Largest number of grants in a row by one worker (a fairness hint). */
  readonly longestRun: number;
  /** How many distinct workers got the lock in the window. */
  readonly workersServed: number;
}

/**
 * Orders every hold by the time its acquire returned and measures each
 * hand-off inside [fromUs, toUs): from the previous holder's release (sent,
 * and returned) to this grant. The first grant of all has no predecessor.
 */
export function analyzeHandoffs(
  holds: readonly Hold[],
  fromUs: number,
  toUs: number,
  checkTokens: boolean,
): HandoffAnalysis {
  const sorted = [...holds].sort((a, b) => a.acquiredUs - b.acquiredUs);
  const sent: number[] = [];
  const done: number[] = [];
  let beforeReleaseDone = 0;
  let overlaps = 0;
  let tokenRegressions = 0;
  let handoffs = 0;
  let toOther = 0;
  const otherSent: number[] = [];
  let longestRun = 0;
  let run = 0;
  let heldUntil = Number.NEGATIVE_INFINITY;
  const served = new Set<number>();
  for (let i = 0; i < sorted.length; i++) {
    const h = sorted[i]!;
    const prev = i > 0 ? sorted[i - 1] : undefined;
    if (h.acquiredUs < heldUntil) overlaps++;
    heldUntil = Math.max(heldUntil, h.releaseSentUs);
    if (checkTokens && prev && !(h.token > prev.token)) tokenRegressions++;
    const inWindow = h.acquiredUs >= fromUs && h.acquiredUs < toUs;
    if (!inWindow) continue;
    handoffs++;
    served.add(h.worker);
    run = prev && prev.worker === h.worker ? run + 1 : 1;
    longestRun = Math.max(longestRun, run);
    if (!prev) continue;
    const fromSent = Math.max(0, h.acquiredUs - prev.releaseSentUs);
    sent.push(fromSent);
    if (prev.worker !== h.worker) {
      toOther++;
      otherSent.push(fromSent);
    }
    const fromDone = h.acquiredUs - prev.releaseDoneUs;
    if (fromDone < 0) beforeReleaseDone++;
    done.push(Math.max(0, fromDone));
  }
  return {
    handoffs,
    fromReleaseSentUs: Float64Array.from(sent),
    fromReleaseDoneUs: Float64Array.from(done),
    beforeReleaseDone,
    overlaps,
    tokenRegressions,
    toOther,
    toOtherFromReleaseSentUs: Float64Array.from(otherSent),
    longestRun,
    workersServed: served.size,
  };
}

/** p50 / p99 / max in ms of microsecond samples. */
export function latencyMs(samplesUs: ArrayLike<number>): { p50: number; p99: number; max: number } {
  const s = summarize(samplesUs);
  return { p50: s.p50 / 1000, p99: s.p99 / 1000, max: s.max / 1000 };
}

/** Adds `from`'s counts into `into`. */
export function addCounts(into: Record<string, number>, from: Readonly<Record<string, number>>) {
  for (const [k, v] of Object.entries(from)) into[k] = (into[k] ?? 0) + v;
}

/** "UNAVAILABLE NO_QUORUM 3, timeout 1", or "" when there is nothing. */
export function formatCounts(counts: Readonly<Record<string, number>>): string {
  return Object.entries(counts)
    .filter(([, n]) => n > 0)
    .sort((a, b) => b[1] - a[1])
    .map(([k, n]) => `${k} ${n}`)
    .join(", ");
}

/** Protobuf reading with bounds checks (the input comes off the network). */
class BoundedReader {
  constructor(
    private readonly buf: Uint8Array,
    public pos: number,
    private readonly end: number,
  ) {}

  get done(): boolean {
    return this.pos >= this.end;
  }

  varint(): number {
    let result = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new RangeError("truncated varint");
      const b = this.buf[this.pos++]!;
      result += (b & 0x7f) * scale;
      if (b < 0x80) return result;
      scale *= 128;
    }
    throw new RangeError("varint too long");
  }

  /** Length-delimited field: [start, end), moving past it. */
  bytes(): [number, number] {
    const length = this.varint();
    const start = this.pos;
    if (length > this.end - start) throw new RangeError("truncated field");
    this.pos += length;
    return [start, this.pos];
  }

  /** Skips a field of this wire type (varint, 64-bit, bytes, 32-bit). */
  skip(wire: number): void {
    if (wire === 0) this.varint();
    else if (wire === 2) this.bytes();
    else if (wire === 1 || wire === 5) {
      this.pos += wire === 1 ? 8 : 4;
      if (this.pos > this.end) throw new RangeError("truncated field");
    } else throw new RangeError(`wire type ${wire}`);
  }

  /** [field number, wire type] */
  tag(): [number, number] {
    const t = this.varint();
    return [Math.floor(t / 8), t & 7];
  }
}

/**
 * The ErrorInfo reason of a google.rpc.Status (grpc-status-details-bin):
 * Status { code = 1; message = 2; repeated Any details = 3 },
 * Any { type_url = 1; value = 2 }, ErrorInfo { reason = 1; domain = 2 }.
 * Undefined when there is no ErrorInfo or the bytes are malformed.
 */
export function errorInfoReason(statusBin: Uint8Array): string | undefined {
  const text = ([s, e]: [number, number]) => new TextDecoder().decode(statusBin.subarray(s, e));
  try {
    const status = new BoundedReader(statusBin, 0, statusBin.length);
    while (!status.done) {
      const [field, wire] = status.tag();
      if (field !== 3 || wire !== 2) {
        status.skip(wire);
        continue;
      }
      const [as, ae] = status.bytes();
      const any = new BoundedReader(statusBin, as, ae);
      let typeUrl = "";
      let value: [number, number] | undefined;
      while (!any.done) {
        const [f, w] = any.tag();
        if (f === 1 && w === 2) typeUrl = text(any.bytes());
        else if (f === 2 && w === 2) value = any.bytes();
        else any.skip(w);
      }
      if (!typeUrl.endsWith("/google.rpc.ErrorInfo") || !value) continue;
      const info = new BoundedReader(statusBin, value[0], value[1]);
      while (!info.done) {
        const [f, w] = info.tag();
        if (f === 1 && w === 2) return text(info.bytes());
        info.skip(w);
      }
    }
  } catch {
    // malformed: no reason
  }
  return undefined;
}
