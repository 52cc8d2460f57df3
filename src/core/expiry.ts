/**
 * Service-owned expiry. Redis never reports an expiry reliably, so every
 * replica runs this sweeper: it asks the store to expire due keys tenant by
 * tenant (the store makes each expiry happen once, even with several
 * replicas sweeping) and sleeps until the next key is due, or the next
 * interval when it knows nothing sooner.
 */
import type { Tenant } from "./model.js";
import type { SweepResult } from "./ports.js";

/** What the sweeper needs: one port per kind of expiring thing (keys, leases, locks). */
export interface Sweepable {
  tenants(): Promise<Tenant[]>;
  sweepExpired(tenant: Tenant, limit: number): Promise<SweepResult>;
  onExpiryScheduled(listener: (tenant: Tenant, expireAt: number) => void): void;
}

export interface SweeperOptions {
  readonly intervalMs: number;
  readonly batch: number;
  /**
   * Errors are reported here (a backend outage must not stop the loop); at
   * most one per `errorReportIntervalMs`, with the count of those skipped.
   */
  readonly onError: (error: unknown, suppressed: number) => void;
  readonly errorReportIntervalMs?: number;
  /** Told of the locks that ended in a sweep, so their holds on the lock nodes are freed. */
  readonly onLocksEnded?: (tenant: Tenant, locks: NonNullable<SweepResult["endedLocks"]>) => void;
}

export class ExpirySweeper {
  /** Tenant -> when it next needs a sweep (ms epoch). */
  private readonly due = new Map<Tenant, number>();
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private stopped = true;
  private lastDiscovery = 0;
  private lastErrorReport = 0;
  private suppressedErrors = 0;

  constructor(
    private readonly target: Sweepable,
    private readonly options: SweeperOptions,
  ) {
    target.onExpiryScheduled((tenant, expireAt) => this.schedule(tenant, expireAt));
  }

  start(): void {
    this.stopped = false;
    this.arm(0);
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  /** Makes sure `tenant` is swept no later than `expireAt`. */
  schedule(tenant: Tenant, expireAt: number): void {
    const current = this.due.get(tenant);
    if (current === undefined || expireAt < current) this.due.set(tenant, expireAt);
    if (!this.running && !this.stopped) this.arm(Math.max(0, expireAt - Date.now()));
  }

  private arm(delayMs: number): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.tick(), Math.min(delayMs, this.options.intervalMs));
    this.timer.unref();
  }

  private async tick(): Promise<void> {
    if (this.stopped || this.running) return;
    this.running = true;
    try {
      const now = Date.now();
      // Now and then sweep every tenant: another replica may have written
      // expiring keys that this one never saw, and then died.
      if (now - this.lastDiscovery >= this.options.intervalMs * 20) {
        this.lastDiscovery = now;
        for (const tenant of await this.target.tenants()) this.due.set(tenant, now);
      }
      for (const [tenant, at] of [...this.due]) {
        if (at > now) continue;
        let result = await this.sweep(tenant);
        while (result.expired >= this.options.batch && !this.stopped)
          result = await this.sweep(tenant);
        if (result.nextExpireAt === undefined) this.due.delete(tenant);
        else this.due.set(tenant, result.nextExpireAt);
      }
    } catch (error) {
      this.report(error);
    } finally {
      this.running = false;
      if (!this.stopped) {
        const next = Math.min(...this.due.values(), Date.now() + this.options.intervalMs);
        this.arm(Math.max(0, next - Date.now()));
      }
    }
  }

  private async sweep(tenant: Tenant): Promise<SweepResult> {
    const result = await this.target.sweepExpired(tenant, this.options.batch);
    if (result.endedLocks && result.endedLocks.length > 0)
      this.options.onLocksEnded?.(tenant, result.endedLocks);
    return result;
  }

  /** A backend outage fails every tick: report the first, then one per interval. */
  private report(error: unknown): void {
    const now = Date.now();
    if (now - this.lastErrorReport < (this.options.errorReportIntervalMs ?? 10_000)) {
      this.suppressedErrors++;
      return;
    }
    this.options.onError(error, this.suppressedErrors);
    this.lastErrorReport = now;
    this.suppressedErrors = 0;
  }
}
