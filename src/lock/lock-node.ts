/**
 * One Redlock lock node: an ioredis client that fails fast (no offline
 * queue, no retries, a short connect timeout, endless reconnection), lock
 * commands bounded by `nodeTimeoutMs`, and the node's right to vote.
 *
 * The per-command timeout is armed here rather than by ioredis: after an
 * event-loop stall (a GC pause, a busy replica) Node runs expired timers
 * before it reads the sockets, so a plain 50 ms timer fails replies that
 * arrived in time. This one, once due, waits for the I/O poll of that loop
 * turn (setImmediate) before it gives up. ioredis keeps its own command
 * timeout as a backstop only.
 *
 * Delayed restart (Redlock): a node that restarted may have lost the holds
 * it granted, so after a restart it votes only once it has been up for the
 * longest lock TTL, unless it fsyncs every write (appendonly yes +
 * appendfsync always). "Restarted" means its run_id differs from the one the
 * deployment recorded for it (in the state store, shared by every replica
 * and surviving service restarts); a node never seen before votes at once
 * and its run_id is recorded, so a fresh deployment does not wait. At every
 * (re)connect, and every REFRESH_MS after, the node is checked: INFO server
 * (run_id, uptime_in_seconds), CONFIG GET appendonly appendfsync (a refused
 * CONFIG counts as not durable), the recorded run_id and its scripts.
 * Between a reconnect and the end of that check the node is not used at all.
 */
import { performance } from "node:perf_hooks";
import type { Redis } from "ioredis";
import type { Logger } from "pino";
import type { RedisSettings } from "../config.js";
import { createRedisClient } from "../store/redis/redis-client.js";
import { defineScripts, ensureScriptsLoaded } from "../store/redis/scripts.js";
import type { RedlockKeys, RedlockScript } from "./redlock-scripts.js";

/** How often a connected node's run_id, uptime and durability are read again. */
const REFRESH_MS = 1000;

export interface LockNodeSettings {
  /** Bound of one lock command (acquire, confirm, extend, release). */
  readonly nodeTimeoutMs: number;
}

export interface VoteRule {
  /** A restarted node votes once it has been up this long. */
  readonly maxLockTtlMs: number;
  /** Test-only: vote at once after any restart (see LockSettings). */
  readonly unsafeImmediateVote: boolean;
}

/**
 * Where the deployment remembers each node's run_id (the state store).
 * `record` "if_absent" stores `current` only for a node never seen; "always"
 * overwrites (once a restarted node has earned its vote). Returns the run_id
 * on record.
 */
export type RunIdRegistry = (
  node: string,
  current: string,
  record: "if_absent" | "always",
) => Promise<string>;

export interface LockNodeEvents {
  readonly failed: (node: string, op: string, error: unknown) => void;
  readonly restarted: (node: string) => void;
}

/** A node's answer to acquire. */
export type NodeVote =
  | { readonly granted: true; readonly nonce: string; readonly counter: number }
  | { readonly granted: false; readonly remainingMs: number; readonly counter: number };

/** The node's label in logs and metrics: host:port, never the credentials of the URL. */
export function nodeLabel(url: string): string {
  const parsed = new URL(url);
  return `${parsed.hostname}:${parsed.port || "6379"}`;
}

export class LockNode {
  readonly label: string;
  private readonly client: Redis;
  /** Bumped at every connection close: a check that straddles one is ignored. */
  private generation = 0;
  private checking: { generation: number; done: Promise<void> } | undefined;
  private checked = false;
  private durable = false;
  private runId: string | undefined;
  /** The node's run_id differs from the one on record: it restarted. */
  private restartedSinceRecord = true;
  /** Latest possible start of the Redis process (performance.now() ms). */
  private upSince = Number.POSITIVE_INFINITY;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    url: string,
    client: RedisSettings,
    private readonly settings: LockNodeSettings,
    private readonly rule: VoteRule,
    private readonly scripts: readonly RedlockScript[],
    private readonly logger: Logger,
    private readonly events: LockNodeEvents,
    private readonly runIds: RunIdRegistry,
  ) {
    this.label = nodeLabel(url);
    this.client = createRedisClient(client, url, logger, `latchkey-lock-${this.label}`);
    defineScripts(this.client, scripts);
    this.client.on("ready", () => void this.check());
    this.client.on("close", () => {
      this.generation++;
      this.checked = false;
    });
  }

  /** Connects and checks the node; never throws (a dead node reconnects on its own). */
  async start(): Promise<void> {
    this.timer ??= setInterval(() => {
      if (this.client.status === "ready") void this.check();
    }, REFRESH_MS);
    this.timer.unref();
    try {
      await this.client.connect();
    } catch {
      return;
    }
    await this.check();
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    if (this.client.status === "end") return;
    if (this.client.status === "ready") await this.client.quit().catch(() => undefined);
    this.client.disconnect();
  }

  /** Connected and checked since the last (re)connect: may be sent commands. */
  usable(): boolean {
    return this.checked && this.client.status === "ready";
  }

  /**
   * Usable, and either not restarted since its run_id was recorded, durable,
   * up for the longest lock TTL, or under the unsafe test rule.
   */
  votes(): boolean {
    return (
      this.usable() &&
      (this.rule.unsafeImmediateVote ||
        !this.restartedSinceRecord ||
        this.durable ||
        this.upLongEnough())
    );
  }

  private upLongEnough(): boolean {
    return performance.now() - this.upSince >= this.rule.maxLockTtlMs;
  }

  async acquire(
    keys: RedlockKeys,
    name: string,
    owner: string,
    nonce: string,
    ttlMs: number,
  ): Promise<NodeVote> {
    const [granted, value, extra] = await this.bounded(
      this.client.redlockAcquire(keys.hold, keys.counters, name, owner, nonce, ttlMs),
    );
    return granted === 1
      ? { granted: true, counter: value, nonce: String(extra) }
      : { granted: false, remainingMs: value, counter: Number(extra) };
  }

  async confirm(keys: RedlockKeys, name: string, nonce: string, token: number): Promise<boolean> {
    const reply = this.client.redlockConfirm(keys.hold, keys.counters, name, nonce, token);
    return (await this.bounded(reply)) === 1;
  }

  async extend(keys: RedlockKeys, nonce: string, ttlMs: number): Promise<boolean> {
    return (await this.bounded(this.client.redlockExtend(keys.hold, nonce, ttlMs))) === 1;
  }

  /** Drops one grant's hold, named by its nonce or its fencing token. */
  async release(keys: RedlockKeys, grant: string): Promise<boolean> {
    return (await this.bounded(this.client.redlockRelease(keys.hold, grant))) === 1;
  }

  /** Fails `reply` after nodeTimeoutMs, but never before the I/O of that loop turn was read. */
  private bounded<T>(reply: Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      const timer = setTimeout(() => {
        setImmediate(() => {
          if (settled) return;
          settled = true;
          reject(
            new Error(
              `lock node ${this.label} did not answer in ${this.settings.nodeTimeoutMs} ms`,
            ),
          );
        });
      }, this.settings.nodeTimeoutMs);
      reply.then(
        (value) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          resolve(value);
        },
        (error: unknown) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          reject(error);
        },
      );
    });
  }

  /** Reads run_id, uptime and durability, loads the scripts; one check per connection at a time. */
  private check(): Promise<void> {
    const generation = this.generation;
    if (this.checking?.generation === generation) return this.checking.done;
    const done = this.runCheck(generation).finally(() => {
      if (this.checking?.done === done) this.checking = undefined;
    });
    this.checking = { generation, done };
    return done;
  }

  private async runCheck(generation: number): Promise<void> {
    try {
      const info = await this.client.info("server");
      const runId = /^run_id:(\w+)/m.exec(info)?.[1];
      const uptime = Number(/^uptime_in_seconds:(\d+)/m.exec(info)?.[1]);
      if (runId === undefined || !Number.isFinite(uptime)) {
        throw new Error("INFO server lacks run_id or uptime_in_seconds");
      }
      const durable = await this.readDurable();
      if (!(await ensureScriptsLoaded(this.client, this.scripts))) {
        throw new Error("the node returned another SHA1 for a loaded script");
      }
      // The connection dropped meanwhile: the next `ready` checks again.
      if (generation !== this.generation) return;
      // Redis reports uptime as the difference of two whole-second clocks, so it
      // may run up to 1 s ahead of the real uptime: take 1 s off, and this
      // estimate of the start is never earlier than the real one.
      const startedBy = performance.now() - Math.max(0, uptime - 1) * 1000;
      if (runId !== this.runId) {
        if (this.runId !== undefined) this.events.restarted(this.label);
        this.runId = runId;
        this.upSince = startedBy;
      } else {
        this.upSince = Math.min(this.upSince, startedBy);
      }
      this.durable = durable;
      // First sight of this node by the deployment: record it, it votes. A
      // different run_id on record: it restarted and must earn its vote; once
      // it has (durable or up long enough), its new run_id is recorded.
      let recorded = await this.runIds(this.label, runId, "if_absent");
      if (recorded !== runId && (durable || this.upLongEnough())) {
        recorded = await this.runIds(this.label, runId, "always");
      }
      if (generation !== this.generation) return;
      this.restartedSinceRecord = recorded !== runId;
      const wasUsable = this.checked;
      this.checked = true;
      if (!wasUsable && !this.votes()) {
        this.logger.info(
          {
            node: this.label,
            votesInMs: Math.ceil(this.rule.maxLockTtlMs - (performance.now() - this.upSince)),
          },
          "lock node restarted since its run_id was recorded: no vote until it has been up for the longest lock TTL",
        );
      }
    } catch (error) {
      // A checked node keeps its state until a check succeeds or its connection drops.
      this.events.failed(this.label, "check", error);
    }
  }

  /** appendonly yes + appendfsync always; a refused CONFIG (renamed or disabled) counts as no. */
  private async readDurable(): Promise<boolean> {
    let reply: unknown;
    try {
      reply = await this.client.call("CONFIG", "GET", "appendonly", "appendfsync");
    } catch (error) {
      if (error instanceof Error && error.name === "ReplyError") return false;
      throw error;
    }
    const pairs = reply as string[];
    const config = new Map<string, string>();
    for (let i = 0; i + 1 < pairs.length; i += 2) config.set(pairs[i]!, pairs[i + 1]!);
    return config.get("appendonly") === "yes" && config.get("appendfsync") === "always";
  }
}
