/**
 * Per-tenant call rate limit, enforced by each replica on its own calls (as
 * Envoy's local rate limit is): a token bucket per tenant that refills at
 * `callsPerSecond` up to `burst`. A call that finds the bucket empty fails
 * RESOURCE_EXHAUSTED `RATE_LIMIT` before its handler runs, with the wait in
 * `retry_after_ms` (and a google.rpc.RetryInfo), so one noisy tenant cannot
 * take a replica's core, or the shared Redis, from the others.
 *
 * A stream counts once, when it opens (a watch or a KeepAlive stream is one
 * call however long it runs). Health and reflection are never limited.
 * Tenants come from the tokens file, so the bucket map is bounded by it.
 */
import type { RateLimitSettings } from "../config.js";
import { Reason, StateError } from "../core/errors.js";
import type { Tenant } from "../core/model.js";

interface Bucket {
  tokens: number;
  /** performance.now() of the last refill. */
  refilledAt: number;
}

export class TenantRateLimiter {
  private readonly buckets = new Map<Tenant, Bucket>();
  private readonly perMs: number;

  constructor(private readonly settings: RateLimitSettings) {
    this.perMs = settings.callsPerSecond / 1000;
  }

  /** Takes one call's token for `tenant`, or throws RESOURCE_EXHAUSTED RATE_LIMIT. */
  admit(tenant: Tenant): void {
    const now = performance.now();
    let bucket = this.buckets.get(tenant);
    if (bucket === undefined) {
      bucket = { tokens: this.settings.burst, refilledAt: now };
      this.buckets.set(tenant, bucket);
    } else {
      bucket.tokens = Math.min(
        this.settings.burst,
        bucket.tokens + (now - bucket.refilledAt) * this.perMs,
      );
      bucket.refilledAt = now;
    }
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return;
    }
    const retryAfterMs = Math.max(1, Math.ceil((1 - bucket.tokens) / this.perMs));
    throw new StateError(
      "resource_exhausted",
      Reason.RATE_LIMIT,
      `tenant ${tenant} is over its rate limit of ${this.settings.callsPerSecond} calls/s; retry in ${retryAfterMs} ms`,
      {
        retry_after_ms: String(retryAfterMs),
        limit: String(this.settings.callsPerSecond),
      },
    );
  }
}
