/**
 * grpc.health.v1.Health over the backend's readiness. The overall status
 * (service name "") and each served service's are SERVING once the backend
 * is ready, NOT_SERVING while it is not and for good once draining starts.
 * Readiness is polled (every readinessPollMs) and changes are pushed to
 * Watch streams.
 */
import type { ServiceImpl } from "@connectrpc/connect";
import type { Logger } from "pino";
import { Gauge, type Registry } from "prom-client";
import { Reason, StateError } from "../core/errors.js";
import {
  type Health,
  HealthCheckResponse_ServingStatus as ServingStatus,
} from "../gen/grpc/health/v1/health_pb.js";

export { ServingStatus };

export interface HealthMonitorOptions {
  /** The backend's readiness (KvStore.ready()). */
  readonly ready: () => Promise<boolean>;
  /** Names answered besides "" (the served services). */
  readonly services: readonly string[];
  readonly pollMs: number;
  readonly logger: Logger;
  /** Where to register the gauge of open Watch streams. */
  readonly registry?: Registry;
}

/** The service's serving state, shared by Health, /readyz and the drain. */
export interface HealthMonitor {
  /** Checks readiness now, then every pollMs. */
  start(): Promise<void>;
  /** Stops polling. */
  stop(): void;
  /** NOT_SERVING from now on (SIGTERM). */
  setDraining(): void;
  /** True when ready and not draining. */
  serving(): boolean;
  /** The status of a service name, undefined if the name is unknown. */
  status(service: string): ServingStatus | undefined;
  /** Every known name and its status. */
  statuses(): Record<string, ServingStatus>;
  /** Calls `listener` on every status change; returns the unsubscribe function. */
  subscribe(listener: () => void): () => void;
  /** Subscribers: the open Watch streams. */
  readonly watchers: number;
}

export function createHealthMonitor(options: HealthMonitorOptions): HealthMonitor {
  const names = new Set(["", ...options.services]);
  const listeners = new Set<() => void>();
  let ready = false;
  let draining = false;
  let checking = false;
  let timer: NodeJS.Timeout | undefined;

  const current = () => (ready && !draining ? ServingStatus.SERVING : ServingStatus.NOT_SERVING);
  const notify = () => {
    for (const listener of [...listeners]) listener();
  };
  const check = async () => {
    if (checking || draining) return;
    checking = true;
    const before = current();
    try {
      ready = await options.ready();
    } catch (error) {
      options.logger.warn({ err: error }, "readiness check failed");
      ready = false;
    } finally {
      checking = false;
    }
    if (current() !== before) {
      options.logger.info({ serving: current() === ServingStatus.SERVING }, "health changed");
      notify();
    }
  };

  const monitor: HealthMonitor = {
    async start() {
      await check();
      timer = setInterval(() => void check(), options.pollMs);
      timer.unref();
    },
    stop() {
      if (timer) clearInterval(timer);
      timer = undefined;
    },
    setDraining() {
      if (draining) return;
      const before = current();
      draining = true;
      if (current() !== before) notify();
    },
    serving: () => current() === ServingStatus.SERVING,
    status: (service) => (names.has(service) ? current() : undefined),
    statuses: () => Object.fromEntries([...names].map((name) => [name, current()])),
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    get watchers() {
      return listeners.size;
    },
  };

  if (options.registry) {
    new Gauge({
      name: "latchkey_health_watchers",
      help: "Open grpc.health.v1.Health/Watch streams.",
      registers: [options.registry],
      collect() {
        this.set(listeners.size);
      },
    });
  }
  return monitor;
}

export function createHealthService(monitor: HealthMonitor): ServiceImpl<typeof Health> {
  return {
    check(req) {
      const status = monitor.status(req.service);
      if (status === undefined) {
        throw new StateError("not_found", Reason.NOT_FOUND, `unknown service ${req.service}`);
      }
      return { status };
    },

    list() {
      const statuses = monitor.statuses();
      return {
        statuses: Object.fromEntries(
          Object.entries(statuses).map(([name, status]) => [name, { status }]),
        ),
      };
    },

    // Sends the status now and on every change; an unknown name is
    // SERVICE_UNKNOWN and the stream stays open, as the protocol asks.
    async *watch(req, ctx) {
      const signal = ctx.signal;
      let changed = true;
      let wake: (() => void) | undefined;
      const unsubscribe = monitor.subscribe(() => {
        changed = true;
        wake?.();
      });
      try {
        let last: ServingStatus | undefined;
        for (;;) {
          signal.throwIfAborted();
          if (changed) {
            changed = false;
            const status = monitor.status(req.service) ?? ServingStatus.SERVICE_UNKNOWN;
            if (status !== last) {
              last = status;
              yield { status };
              continue;
            }
          }
          await new Promise<void>((resolve) => {
            const done = () => {
              wake = undefined;
              signal.removeEventListener("abort", done);
              resolve();
            };
            wake = done;
            signal.addEventListener("abort", done, { once: true });
          });
        }
      } finally {
        unsubscribe();
      }
    },
  };
}
