/**
 * RPC metrics in Prometheus form (prom-client), exported on the admin port.
 */
import type { DescMethod } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { Counter, Histogram, type Registry } from "prom-client";

export interface RpcMetrics {
  /** Returns a recorder for one method: `code` 0 = OK, else the Connect code. */
  forMethod(method: DescMethod): (code: Code | 0, elapsedMs: number) => void;
}

const CODE_NAMES: Record<number, string> = {
  0: "OK",
  [Code.Canceled]: "CANCELLED",
  [Code.Unknown]: "UNKNOWN",
  [Code.InvalidArgument]: "INVALID_ARGUMENT",
  [Code.DeadlineExceeded]: "DEADLINE_EXCEEDED",
  [Code.NotFound]: "NOT_FOUND",
  [Code.AlreadyExists]: "ALREADY_EXISTS",
  [Code.PermissionDenied]: "PERMISSION_DENIED",
  [Code.ResourceExhausted]: "RESOURCE_EXHAUSTED",
  [Code.FailedPrecondition]: "FAILED_PRECONDITION",
  [Code.Aborted]: "ABORTED",
  [Code.OutOfRange]: "OUT_OF_RANGE",
  [Code.Unimplemented]: "UNIMPLEMENTED",
  [Code.Internal]: "INTERNAL",
  [Code.Unavailable]: "UNAVAILABLE",
  [Code.DataLoss]: "DATA_LOSS",
  [Code.Unauthenticated]: "UNAUTHENTICATED",
};

export function createRpcMetrics(registry: Registry): RpcMetrics {
  const calls = new Counter({
    name: "latchkey_rpc_calls_total",
    help: "Calls handled, by service, method and gRPC status code.",
    labelNames: ["service", "method", "code"] as const,
    registers: [registry],
  });
  const duration = new Histogram({
    name: "latchkey_rpc_duration_seconds",
    help: "Time from a call's start to its end (for streams: the stream's life).",
    labelNames: ["service", "method"] as const,
    buckets: [
      0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10,
    ],
    registers: [registry],
  });
  return {
    forMethod(method) {
      const service = method.parent.typeName;
      const name = method.name;
      const timer = duration.labels(service, name);
      const counters = new Map<number, ReturnType<typeof calls.labels>>();
      return (code, elapsedMs) => {
        let counter = counters.get(code);
        if (!counter) {
          counter = calls.labels(service, name, CODE_NAMES[code] ?? String(code));
          counters.set(code, counter);
        }
        counter.inc();
        timer.observe(elapsedMs / 1000);
      };
    },
  };
}
