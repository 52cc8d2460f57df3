/**
 * Renders BenchRows as one markdown table per group: every row with its
 * throughput and latency, and for rows naming a peer (and a floor) the
 * ratios row / peer for throughput and p99, measured in the same run.
 */
import type { BenchRow } from "../types.js";

const key = (r: BenchRow, subject: string) =>
  `${r.group}\u0000${r.scenario}\u0000${r.concurrency}\u0000${subject}`;

export function formatNumber(value: number | undefined): string {
  if (value === undefined || !Number.isFinite(value)) return "–";
  if (value >= 100) return Math.round(value).toLocaleString("en-US");
  if (value >= 10) return value.toFixed(1);
  return value.toFixed(2);
}

export function formatMs(value: number | undefined): string {
  if (value === undefined || !Number.isFinite(value)) return "–";
  if (value >= 100) return value.toFixed(0);
  if (value >= 10) return value.toFixed(1);
  if (value >= 1) return value.toFixed(2);
  return value.toFixed(3);
}

function ratio(a: number | undefined, b: number | undefined): string {
  if (a === undefined || b === undefined || !Number.isFinite(a) || !Number.isFinite(b) || b === 0)
    return "";
  return `${(a / b).toFixed(2)}×`;
}

const cell = (text: string) => text.replaceAll("|", "\\|").replaceAll("\n", " ");

/** Groups in first-seen order, rows ordered by scenario (first seen), concurrency, then input order. */
export function renderTables(
  rows: readonly BenchRow[],
  groupNotes: ReadonlyMap<string, string[]>,
): string {
  const byKey = new Map(rows.map((r) => [key(r, r.subject), r]));
  const groups = [...new Set(rows.map((r) => r.group))];
  const out: string[] = [];
  for (const group of groups) {
    const inGroup = rows.filter((r) => r.group === group);
    const scenarios = [...new Set(inGroup.map((r) => r.scenario))];
    const ordered = inGroup
      .map((r, i) => ({ r, i }))
      .sort(
        (a, b) =>
          scenarios.indexOf(a.r.scenario) - scenarios.indexOf(b.r.scenario) ||
          a.r.concurrency - b.r.concurrency ||
          a.i - b.i,
      )
      .map(({ r }) => r);
    const hasFloor = ordered.some((r) => r.floor !== undefined);
    const hasPeer = ordered.some((r) => r.peerOf !== undefined);
    out.push(`### ${group}`, "");
    for (const note of groupNotes.get(group) ?? []) out.push(note);
    if (groupNotes.get(group)?.length) out.push("");
    const header = ["scenario", "conc.", "subject", "throughput", "p50 ms", "p99 ms"];
    if (hasPeer) header.push("÷ peer (thr.)", "÷ peer (p99)");
    if (hasFloor) header.push("÷ floor (thr.)");
    header.push("note");
    out.push(`| ${header.join(" | ")} |`);
    out.push(
      `|${header.map((h) => (h === "note" || h === "scenario" || h === "subject" ? "---" : "---:")).join("|")}|`,
    );
    for (const r of ordered) {
      const peer = r.peerOf === undefined ? undefined : byKey.get(key(r, r.peerOf));
      const floor = r.floor === undefined ? undefined : byKey.get(key(r, r.floor));
      const cells = [
        cell(r.scenario),
        String(r.concurrency),
        cell(r.subject),
        `${formatNumber(r.throughput)} ${r.unit}`,
        formatMs(r.p50Ms),
        formatMs(r.p99Ms),
      ];
      if (hasPeer) {
        cells.push(
          peer ? `${ratio(r.throughput, peer.throughput)} ${cell(peer.subject)}` : "",
          peer ? ratio(r.p99Ms, peer.p99Ms) : "",
        );
      }
      if (hasFloor)
        cells.push(floor ? `${ratio(r.throughput, floor.throughput)} ${cell(floor.subject)}` : "");
      cells.push(cell(r.note ?? ""));
      out.push(`| ${cells.join(" | ")} |`);
    }
    out.push("");
  }
  return out.join("\n");
}
