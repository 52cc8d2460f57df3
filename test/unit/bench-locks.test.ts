/**
 * The lock benchmark's analysis (bench/lib/lock-stats.ts): hand-off
 * pairing, the safety checks and the ErrorInfo reader. No speed is
 * asserted.
 */
import { create, toBinary } from "@bufbuild/protobuf";
import { anyPack } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import {
  addCounts,
  analyzeHandoffs,
  errorInfoReason,
  formatCounts,
  type Hold,
  latencyMs,
} from "../../bench/lib/lock-stats.js";
import { ErrorInfoSchema } from "../../src/gen/google/rpc/error_details_pb.js";
import { StatusSchema } from "../../src/gen/google/rpc/status_pb.js";

const hold = (
  worker: number,
  acquiredUs: number,
  releaseSentUs: number,
  releaseDoneUs: number,
  token = 0,
): Hold => ({ worker, acquiredUs, releaseSentUs, releaseDoneUs, token });

describe("analyzeHandoffs", () => {
  // Three holders in turn; records arrive out of order (several processes).
  const holds = [
    hold(2, 2000, 2010, 2300, 3),
    hold(0, 1000, 1005, 1200, 1),
    hold(1, 1500, 1502, 1600, 2),
    hold(0, 2600, 2601, 2700, 4),
  ];

  it("pairs each grant with the previous holder's release, in grant order", () => {
    const a = analyzeHandoffs(holds, 0, 10_000, true);
    expect(a.handoffs).toBe(4);
    // The first grant has no predecessor.
    expect([...a.fromReleaseSentUs]).toEqual([1500 - 1005, 2000 - 1502, 2600 - 2010]);
    expect([...a.fromReleaseDoneUs]).toEqual([1500 - 1200, 2000 - 1600, 2600 - 2300]);
    expect(a.beforeReleaseDone).toBe(0);
    expect(a.overlaps).toBe(0);
    expect(a.tokenRegressions).toBe(0);
    expect(a.workersServed).toBe(3);
    expect(a.longestRun).toBe(1);
    expect(a.toOther).toBe(3);
  });

  it("counts only grants inside the window, but pairs them with releases before it", () => {
    const a = analyzeHandoffs(holds, 1500, 2600, true);
    expect(a.handoffs).toBe(2);
    expect([...a.fromReleaseSentUs]).toEqual([1500 - 1005, 2000 - 1502]);
  });

  it("counts a grant that returns before the previous release's answer as 0", () => {
    const a = analyzeHandoffs([hold(0, 100, 110, 500), hold(1, 400, 401, 450)], 0, 1000, false);
    expect([...a.fromReleaseDoneUs]).toEqual([0]);
    expect(a.beforeReleaseDone).toBe(1);
    expect([...a.fromReleaseSentUs]).toEqual([290]);
    expect(a.overlaps).toBe(0);
  });

  it("flags a grant while another client still holds the lock", () => {
    // Worker 1 gets it at 150 while worker 0 holds it until 200; worker 2's
    // grant at 180 overlaps too (the running maximum, not only the previous hold).
    const a = analyzeHandoffs(
      [hold(0, 100, 200, 210), hold(1, 150, 160, 170), hold(2, 180, 190, 195)],
      0,
      1000,
      false,
    );
    expect(a.overlaps).toBe(2);
  });

  it("flags fencing tokens that do not strictly increase in grant order", () => {
    const a = analyzeHandoffs(
      [hold(0, 100, 101, 110, 5), hold(1, 200, 201, 210, 5), hold(2, 300, 301, 310, 4)],
      0,
      1000,
      true,
    );
    expect(a.tokenRegressions).toBe(2);
    expect(analyzeHandoffs(holds, 0, 10_000, false).tokenRegressions).toBe(0);
  });

  it("reports streaks of one worker", () => {
    const a = analyzeHandoffs(
      [hold(0, 1, 2, 3), hold(0, 4, 5, 6), hold(0, 7, 8, 9), hold(1, 10, 11, 12)],
      0,
      100,
      false,
    );
    expect(a.longestRun).toBe(3);
    expect(a.workersServed).toBe(2);
    expect(a.toOther).toBe(1);
    expect([...a.toOtherFromReleaseSentUs]).toEqual([10 - 8]);
  });

  it("handles no holds", () => {
    const a = analyzeHandoffs([], 0, 100, true);
    expect(a.handoffs).toBe(0);
    expect(a.fromReleaseSentUs.length).toBe(0);
    expect(Number.isNaN(latencyMs(a.fromReleaseSentUs).p50)).toBe(true);
  });
});

describe("latencyMs and counts", () => {
  it("converts microsecond percentiles to ms", () => {
    const samples = Array.from({ length: 100 }, (_, i) => (i + 1) * 1000);
    expect(latencyMs(samples)).toEqual({ p50: 50, p99: 99, max: 100 });
  });

  it("adds and formats counts, largest first, zeros dropped", () => {
    const into: Record<string, number> = { a: 1 };
    addCounts(into, { a: 2, b: 5, c: 0 });
    expect(into).toEqual({ a: 3, b: 5, c: 0 });
    expect(formatCounts(into)).toBe("b 5, a 3");
    expect(formatCounts({})).toBe("");
  });
});

describe("errorInfoReason", () => {
  const status = (reason: string | undefined) =>
    toBinary(
      StatusSchema,
      create(StatusSchema, {
        code: 14,
        message: "fewer than a quorum of lock nodes are reachable and voting",
        details:
          reason === undefined
            ? []
            : [
                anyPack(
                  ErrorInfoSchema,
                  create(ErrorInfoSchema, {
                    reason,
                    domain: "latchkey.dev",
                    metadata: { quorum: "2", voting: "1" },
                  }),
                ),
              ],
      }),
    );

  it("reads the reason of the ErrorInfo detail", () => {
    expect(errorInfoReason(status("NO_QUORUM"))).toBe("NO_QUORUM");
  });

  it("is undefined without an ErrorInfo, or on garbage", () => {
    expect(errorInfoReason(status(undefined))).toBeUndefined();
    // Truncated varint, truncated length, unknown wire type.
    expect(errorInfoReason(new Uint8Array([0x1a, 0xff]))).toBeUndefined();
    expect(errorInfoReason(new Uint8Array([0x1a, 0x05, 0x0a]))).toBeUndefined();
    expect(errorInfoReason(new Uint8Array([0x0f]))).toBeUndefined();
    expect(errorInfoReason(status("NO_QUORUM").subarray(0, 20))).toBeUndefined();
    expect(errorInfoReason(new Uint8Array())).toBeUndefined();
  });
});
