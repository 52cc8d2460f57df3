/**
 * LockNodes over N independent Redis servers: the Redlock algorithm, with a
 * fencing counter per lock name kept on the nodes.
 *
 * acquire: the fresh nonce is set with the TTL on every voting node at once
 * (an owner that already holds a node keeps its nonce there), timed from
 * before the first send to after the last answer. It is granted only if a
 * quorum (N/2+1 of the configured N, never of the reachable ones) granted one
 * nonce AND validity = ttl - elapsed - (ttl * driftFactor + 2 ms) is still
 * positive. Otherwise the attempt's holds are undone on every node it was
 * sent to (a node that timed out may still have applied it), and the answer
 * is: NO_QUORUM if fewer than a quorum of nodes are reachable and voting;
 * `held` if other owners hold enough nodes that no quorum is possible, with
 * the time until enough of their holds run out; else `split`.
 *
 * Counters: every node reports the name's counter; the grant carries the
 * highest one of all nodes that answered (at least the granting quorum's),
 * and confirm raises the counter to the minted token on every node it
 * reaches. A token answered to a client is thus on a quorum of counters, and
 * any later granting quorum shares a node with it.
 *
 * A node that is unreachable, being checked after a reconnect, or waiting out
 * its delayed restart (see LockNode) gets no vote; with fewer than a quorum
 * voting every call fails at once, without a round trip.
 */
import { randomBytes } from "node:crypto";
import { performance } from "node:perf_hooks";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import type { LockSettings, RedisSettings } from "../config.js";
import { Reason, StateError } from "../core/errors.js";
import type { Tenant } from "../core/model.js";
import type { LockNodes, NodeAcquire } from "../core/ports.js";
import { checkKeyPrefix } from "../store/redis/keys.js";
import { LockNode, type NodeVote, type RunIdRegistry } from "./lock-node.js";
import { createRedlockMetrics, type RedlockMetrics } from "./redlock-metrics.js";
import { type RedlockKeys, redlockKeys, redlockScripts } from "./redlock-scripts.js";

/** Connect timeout of a lock node: short, as a dead node must not hold anything up. */
const MIN_CONNECT_TIMEOUT_MS = 200;
/** How long start() waits for the nodes' first check before serving anyway. */
const START_WAIT_MS = 2000;

/** Clock drift allowance of Redlock: a fraction of the TTL plus 2 ms for timer granularity. */
export function driftMs(ttlMs: number, driftFactor: number): number {
  return ttlMs * driftFactor + 2;
}

export class RedlockLockNodes implements LockNodes {
  private readonly nodes: readonly LockNode[];
  /** N/2+1 of the configured nodes. */
  readonly quorum: number;
  private readonly metrics: RedlockMetrics;

  constructor(
    urls: readonly string[],
    private readonly settings: LockSettings,
    private readonly redis: RedisSettings,
    private readonly logger: Logger,
    registry: Registry,
    runIds: RunIdRegistry,
  ) {
    if (urls.length === 0) throw new Error("Redlock needs at least one lock node");
    // Lock commands are bounded by nodeTimeoutMs in LockNode; the client's own
    // command timeout (the state Redis's) is only a backstop.
    const client: RedisSettings = {
      ...redis,
      connectTimeoutMs: Math.min(
        redis.connectTimeoutMs,
        Math.max(MIN_CONNECT_TIMEOUT_MS, 4 * settings.nodeTimeoutMs),
      ),
    };
    const rule = {
      maxLockTtlMs: settings.maxLockTtlMs,
      unsafeImmediateVote: settings.unsafeImmediateVote,
    };
    const scripts = redlockScripts();
    this.metrics = createRedlockMetrics(registry, () =>
      this.nodes.map((node): [string, boolean] => [node.label, node.votes()]),
    );
    const events = {
      failed: (node: string, op: string, error: unknown) => this.nodeFailed(node, op, error),
      restarted: (node: string) => {
        this.metrics.nodeRestarted(node);
        logger.warn(
          { node, votesInMs: rule.unsafeImmediateVote ? 0 : settings.maxLockTtlMs },
          "lock node restarted (run_id changed)",
        );
      },
    };
    this.nodes = urls.map(
      (url) => new LockNode(url, client, settings, rule, scripts, logger, events, runIds),
    );
    const labels = this.nodes.map((node) => node.label);
    const twice = labels.find((label, i) => labels.indexOf(label) !== i);
    if (twice !== undefined) {
      // One server counted twice would let a minority look like a quorum.
      throw new Error(`lock node ${twice} is configured twice; every lock node must be distinct`);
    }
    this.quorum = Math.floor(urls.length / 2) + 1;
  }

  /** Connects to every node; never fails on unreachable nodes (locks then fail NO_QUORUM). */
  async start(): Promise<void> {
    checkKeyPrefix(this.redis.keyPrefix);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all(this.nodes.map((node) => node.start())),
      new Promise((resolve) => {
        timer = setTimeout(resolve, START_WAIT_MS);
      }),
    ]);
    clearTimeout(timer);
    this.logger.info(
      {
        nodes: this.nodes.map((node) => node.label),
        quorum: this.quorum,
        voting: this.voters().length,
      },
      "redlock lock nodes started",
    );
  }

  async close(): Promise<void> {
    await Promise.all(this.nodes.map((node) => node.close()));
  }

  /** True when a quorum of nodes votes (informational: service readiness does not wait for it). */
  async ready(): Promise<boolean> {
    return this.voters().length >= this.quorum;
  }

  async acquire(tenant: Tenant, name: string, owner: string, ttlMs: number): Promise<NodeAcquire> {
    const voters = this.voters();
    if (voters.length < this.quorum) {
      this.metrics.acquired("no_quorum");
      throw this.noQuorum(voters.length);
    }
    const keys = this.keysOf(tenant, name);
    // "n" first: a nonce is never all digits, so a release by fencing token cannot match one.
    const nonce = `n${randomBytes(16).toString("base64url")}`;
    const startedAt = Date.now();
    const began = performance.now();
    const votes = await Promise.all(
      voters.map((node) =>
        node
          .acquire(keys, name, owner, nonce, ttlMs)
          .catch((error: unknown): undefined => this.failed(node, "acquire", error)),
      ),
    );
    const validityMs = Math.floor(
      ttlMs - (performance.now() - began) - driftMs(ttlMs, this.settings.driftFactor),
    );
    const tally = tallyVotes(votes);
    const winner = tally.best;
    // Where this attempt may have left a hold: nodes that granted its nonce, and
    // nodes that did not answer (the command may have applied). Nodes that
    // answered "held" took nothing.
    const touched = voters.filter((_, i) => {
      const vote = votes[i];
      return vote === undefined || (vote.granted && vote.nonce === nonce);
    });
    if (winner && winner.count >= this.quorum && validityMs > 0) {
      // Nodes where this owner's older hold was gone got the fresh nonce: drop those strays.
      if (winner.nonce !== nonce && tally.grants.has(nonce)) await this.undo(touched, keys, nonce);
      this.metrics.acquired("granted");
      return {
        kind: "granted",
        nonce: winner.nonce,
        counter: tally.counter,
        startedAt,
        validityMs,
      };
    }
    await this.undo(touched, keys, nonce);
    if (tally.answered < this.quorum) {
      this.metrics.acquired("no_quorum");
      throw this.noQuorum(tally.answered);
    }
    // Other owners' holds leave fewer free nodes than a quorum: wait until enough run out.
    const mustExpire = tally.held.length - (tally.answered - this.quorum);
    if (mustExpire > 0) {
      this.metrics.acquired("held");
      const remaining = tally.held.sort((a, b) => a - b)[mustExpire - 1]!;
      return {
        kind: "held",
        remainingMs: remaining >= 0 ? remaining : this.settings.maxLockTtlMs,
      };
    }
    this.metrics.acquired("split");
    return { kind: "split" };
  }

  async confirm(tenant: Tenant, name: string, nonce: string, token: number): Promise<boolean> {
    const keys = this.keysOf(tenant, name);
    // Every usable node, voting or not: raising a counter is always safe and
    // re-seeds a node that came back empty.
    const held = await Promise.all(
      this.usable().map((node) =>
        node.confirm(keys, name, nonce, token).then(
          (holds) => holds && node.votes(),
          (error: unknown) => this.failed(node, "confirm", error) ?? false,
        ),
      ),
    );
    if (held.filter(Boolean).length >= this.quorum) return true;
    this.metrics.quorumLost("confirm");
    return false;
  }

  async extend(
    tenant: Tenant,
    name: string,
    nonce: string,
    ttlMs: number,
  ): Promise<{ extended: boolean; validityMs: number; startedAt: number }> {
    const voters = this.voters();
    if (voters.length < this.quorum) throw this.noQuorum(voters.length);
    const keys = this.keysOf(tenant, name);
    const startedAt = Date.now();
    const began = performance.now();
    const results = await Promise.all(
      voters.map((node) =>
        node
          .extend(keys, nonce, ttlMs)
          .catch((error: unknown): undefined => this.failed(node, "extend", error)),
      ),
    );
    const validityMs = Math.floor(
      ttlMs - (performance.now() - began) - driftMs(ttlMs, this.settings.driftFactor),
    );
    const answered = results.filter((r) => r !== undefined).length;
    if (answered < this.quorum) throw this.noQuorum(answered);
    const extended = results.filter((r) => r === true).length >= this.quorum && validityMs > 0;
    if (!extended) this.metrics.quorumLost("extend");
    return { extended, validityMs: extended ? validityMs : 0, startedAt };
  }

  async release(tenant: Tenant, name: string, grant: string): Promise<void> {
    await this.undo(this.usable(), this.keysOf(tenant, name), grant);
  }

  /** Nodes that vote now. */
  private voters(): LockNode[] {
    return this.nodes.filter((node) => node.votes());
  }

  /** Nodes that may be sent commands (checked since their last reconnect). */
  private usable(): LockNode[] {
    return this.nodes.filter((node) => node.usable());
  }

  /** Drops `nonce`'s hold on `nodes`, best effort: a dead node costs at most the node timeout. */
  private async undo(nodes: readonly LockNode[], keys: RedlockKeys, nonce: string): Promise<void> {
    await Promise.all(
      nodes.map((node) =>
        node.release(keys, nonce).catch((error: unknown) => this.failed(node, "release", error)),
      ),
    );
  }

  private keysOf(tenant: Tenant, name: string): RedlockKeys {
    return redlockKeys(this.redis.keyPrefix, tenant, name);
  }

  private failed(node: LockNode, op: string, error: unknown): undefined {
    this.nodeFailed(node.label, op, error);
    return undefined;
  }

  private nodeFailed(node: string, op: string, error: unknown): void {
    this.metrics.nodeFailed(node, op);
    this.logger.debug({ node, op, err: error }, "lock node command failed");
  }

  private noQuorum(voting: number): StateError {
    return new StateError(
      "unavailable",
      Reason.NO_QUORUM,
      "fewer than a quorum of lock nodes are reachable and voting",
      { quorum: String(this.quorum), voting: String(voting), nodes: String(this.nodes.length) },
    );
  }
}

interface Tally {
  /** Nodes that answered at all. */
  answered: number;
  /** Grants per nonce (several only when an owner re-takes holds it kept on some nodes). */
  grants: Map<string, number>;
  best: { nonce: string; count: number } | undefined;
  /** Remaining ms of each hold by another owner. */
  held: number[];
  /** Highest counter reported by any node that answered. */
  counter: number;
}

function tallyVotes(votes: readonly (NodeVote | undefined)[]): Tally {
  const tally: Tally = { answered: 0, grants: new Map(), best: undefined, held: [], counter: 0 };
  for (const vote of votes) {
    if (!vote) continue;
    tally.answered++;
    tally.counter = Math.max(tally.counter, vote.counter);
    if (!vote.granted) {
      tally.held.push(vote.remainingMs);
      continue;
    }
    const count = (tally.grants.get(vote.nonce) ?? 0) + 1;
    tally.grants.set(vote.nonce, count);
    if (!tally.best || count > tally.best.count) tally.best = { nonce: vote.nonce, count };
  }
  return tally;
}
