/**
 * Per-code call counters scraped from Prometheus text, to catch calls that
 * h2load counted as successes (HTTP 200) but that ended with a gRPC error:
 * Latchkey's `latchkey_rpc_calls_total{code}` on its admin port and etcd's
 * `grpc_server_handled_total{grpc_code}` on its client port.
 */
import http from "node:http";

export type CodeCounts = Map<string, number>;

/** Sums `metric` samples by the value of `codeLabel`, keeping those whose labels include `where`. */
export function parseCodeCounts(
  text: string,
  metric: string,
  codeLabel: string,
  where: Readonly<Record<string, string>> = {},
): CodeCounts {
  const counts: CodeCounts = new Map();
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${metric}{`)) continue;
    const close = line.lastIndexOf("}");
    const labels = new Map<string, string>();
    for (const m of line.slice(metric.length + 1, close).matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) {
      labels.set(m[1]!, m[2]!);
    }
    if (!Object.entries(where).every(([k, v]) => labels.get(k) === v)) continue;
    const code = labels.get(codeLabel) ?? "?";
    const value = Number(
      line
        .slice(close + 1)
        .trim()
        .split(/\s+/)[0],
    );
    counts.set(code, (counts.get(code) ?? 0) + value);
  }
  return counts;
}

export function fetchText(url: string, timeoutMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    });
    req.on("error", reject);
    req.on("timeout", () => req.destroy(new Error(`GET ${url}: timeout`)));
  });
}

/** after - before, non-OK codes only. */
export function errorDelta(before: CodeCounts, after: CodeCounts, okCode = "OK"): CodeCounts {
  const delta: CodeCounts = new Map();
  for (const [code, n] of after) {
    if (code === okCode) continue;
    const d = n - (before.get(code) ?? 0);
    if (d > 0) delta.set(code, d);
  }
  return delta;
}

export function formatCodes(counts: CodeCounts): string {
  return [...counts].map(([code, n]) => `${code} ${n}`).join(", ");
}
