/**
 * Lock nodes of the embedded backend: one in-process "node", so the quorum
 * is 1 and mutual exclusion is exact. Holds expire by time, as on Redis.
 */
import { randomBytes } from "node:crypto";
import type { Tenant } from "../core/model.js";
import type { LockNodes, NodeAcquire } from "../core/ports.js";

interface Hold {
  readonly owner: string;
  readonly nonce: string;
  expireAt: number;
  /** The fencing token, once confirmed. */
  token?: string;
}

export class MemoryLockNodes implements LockNodes {
  private readonly holds = new Map<string, Hold>();
  private readonly counters = new Map<string, number>();
  private acquisitions = 0;

  async start(): Promise<void> {}
  async close(): Promise<void> {}
  async ready(): Promise<boolean> {
    return true;
  }

  async acquire(tenant: Tenant, name: string, owner: string, ttlMs: number): Promise<NodeAcquire> {
    const key = `${tenant}\u0000${name}`;
    const now = Date.now();
    if (++this.acquisitions % 1024 === 0) this.purgeExpired(now);
    const hold = this.holds.get(key);
    if (hold && hold.expireAt > now && hold.owner !== owner)
      return { kind: "held", remainingMs: hold.expireAt - now };
    const nonce =
      hold && hold.expireAt > now ? hold.nonce : `n${randomBytes(16).toString("base64url")}`;
    this.holds.set(key, { owner, nonce, expireAt: now + ttlMs });
    return {
      kind: "granted",
      nonce,
      counter: this.counters.get(key) ?? 0,
      startedAt: now,
      validityMs: ttlMs,
    };
  }

  async confirm(tenant: Tenant, name: string, nonce: string, token: number): Promise<boolean> {
    const key = `${tenant}\u0000${name}`;
    const hold = this.holds.get(key);
    this.counters.set(key, Math.max(this.counters.get(key) ?? 0, token));
    if (!hold || hold.nonce !== nonce || hold.expireAt <= Date.now()) return false;
    hold.token = String(token);
    return true;
  }

  async extend(tenant: Tenant, name: string, nonce: string, ttlMs: number) {
    const hold = this.holds.get(`${tenant}\u0000${name}`);
    const now = Date.now();
    if (!hold || hold.nonce !== nonce || hold.expireAt <= now)
      return { extended: false, validityMs: 0, startedAt: now };
    hold.expireAt = now + ttlMs;
    return { extended: true, validityMs: ttlMs, startedAt: now };
  }

  async release(tenant: Tenant, name: string, grant: string): Promise<void> {
    const key = `${tenant}\u0000${name}`;
    const hold = this.holds.get(key);
    if (hold && (hold.nonce === grant || hold.token === grant)) this.holds.delete(key);
  }

  /** Drops holds that ran out, so names never taken again do not accumulate. */
  private purgeExpired(now: number): void {
    for (const [key, hold] of this.holds) if (hold.expireAt <= now) this.holds.delete(key);
  }
}
