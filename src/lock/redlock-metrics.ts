/**
 * Prometheus metrics of the Redlock lock nodes: acquire outcomes (grants,
 * contention, split votes, no quorum), confirm/extend calls that found no
 * quorum, per-node command failures and restarts, and which nodes vote.
 */
import { Counter, Gauge, type Registry } from "prom-client";

export type AcquireOutcome = "granted" | "held" | "split" | "no_quorum";

export interface RedlockMetrics {
  acquired(outcome: AcquireOutcome): void;
  quorumLost(op: "confirm" | "extend"): void;
  nodeFailed(node: string, op: string): void;
  nodeRestarted(node: string): void;
}

/** `voting` is read at scrape time: node label -> whether it votes now. */
export function createRedlockMetrics(
  registry: Registry,
  voting: () => Iterable<[string, boolean]>,
): RedlockMetrics {
  const acquires = new Counter({
    name: "latchkey_lock_node_acquires_total",
    help: "Redlock acquire attempts by outcome: granted, held (contention), split (no owner reached a quorum), no_quorum (too few nodes reachable and voting).",
    labelNames: ["outcome"] as const,
    registers: [registry],
  });
  const lost = new Counter({
    name: "latchkey_lock_node_quorum_lost_total",
    help: "Confirm and extend calls that found no quorum of voting lock nodes holding the grant.",
    labelNames: ["op"] as const,
    registers: [registry],
  });
  const failures = new Counter({
    name: "latchkey_lock_node_failures_total",
    help: "Lock node commands that failed (unreachable, timed out, or refused), by node and operation.",
    labelNames: ["node", "op"] as const,
    registers: [registry],
  });
  const restarts = new Counter({
    name: "latchkey_lock_node_restarts_total",
    help: "Lock node restarts seen (run_id changed); such a node gets no vote until the longest lock TTL has passed, unless it fsyncs every write.",
    labelNames: ["node"] as const,
    registers: [registry],
  });
  new Gauge({
    name: "latchkey_lock_node_voting",
    help: "1 if the lock node votes now; 0 if it is unreachable, being checked after a (re)connect, or waiting out its delayed restart.",
    labelNames: ["node"] as const,
    registers: [registry],
    collect() {
      for (const [node, votes] of voting()) this.set({ node }, votes ? 1 : 0);
    },
  });
  return {
    acquired: (outcome) => acquires.inc({ outcome }),
    quorumLost: (op) => lost.inc({ op }),
    nodeFailed: (node, op) => failures.inc({ node, op }),
    nodeRestarted: (node) => restarts.inc({ node }),
  };
}
