/**
 * The one error type of the domain. `code` is a transport-neutral category
 * (named after the gRPC code it maps to in api/errors.ts), `reason` is the
 * contract's machine-readable reason and `metadata` lets a client act
 * without another read. `message` is safe to show a client; `cause` is not
 * and is only logged.
 */
export type ErrorCode =
  | "invalid_argument"
  | "not_found"
  | "already_exists"
  | "aborted"
  | "failed_precondition"
  | "out_of_range"
  | "resource_exhausted"
  | "unauthenticated"
  | "permission_denied"
  | "unavailable"
  | "data_loss"
  | "deadline_exceeded"
  | "cancelled"
  | "internal";

/** Reasons of the contract, plus the few this implementation adds. */
export const Reason = {
  INVALID_KEY: "INVALID_KEY",
  TOO_LARGE: "TOO_LARGE",
  INVALID_TTL: "INVALID_TTL",
  INVALID_ARGUMENT: "INVALID_ARGUMENT",
  INVALID_PAGE_TOKEN: "INVALID_PAGE_TOKEN",
  NOT_FOUND: "NOT_FOUND",
  CHECKPOINT_NOT_FOUND: "CHECKPOINT_NOT_FOUND",
  LEASE_NOT_FOUND: "LEASE_NOT_FOUND",
  LEASE_EXISTS: "LEASE_EXISTS",
  VERSION_MISMATCH: "VERSION_MISMATCH",
  SEQUENCE_STALE: "SEQUENCE_STALE",
  FENCE_STALE: "FENCE_STALE",
  INVALID_TOKEN: "INVALID_TOKEN",
  NOT_JSON: "NOT_JSON",
  COMPACTED: "COMPACTED",
  SLOW_CONSUMER: "SLOW_CONSUMER",
  QUOTA: "QUOTA",
  RATE_LIMIT: "RATE_LIMIT",
  UNAUTHENTICATED: "UNAUTHENTICATED",
  PERMISSION_DENIED: "PERMISSION_DENIED",
  BACKEND_UNAVAILABLE: "BACKEND_UNAVAILABLE",
  NO_QUORUM: "NO_QUORUM",
  BACKEND_RESET: "BACKEND_RESET",
  DEADLINE_EXCEEDED: "DEADLINE_EXCEEDED",
  CANCELLED: "CANCELLED",
  SHUTTING_DOWN: "SHUTTING_DOWN",
  INTERNAL: "INTERNAL",
} as const;
export type Reason = (typeof Reason)[keyof typeof Reason];

export class StateError extends Error {
  override readonly name = "StateError";
  readonly code: ErrorCode;
  readonly reason: Reason;
  readonly metadata: Readonly<Record<string, string>>;

  constructor(
    code: ErrorCode,
    reason: Reason,
    message: string,
    metadata: Record<string, string> = {},
    cause?: unknown,
  ) {
    super(message, cause === undefined ? undefined : { cause });
    this.code = code;
    this.reason = reason;
    this.metadata = metadata;
  }
}

export const invalidArgument = (
  reason: Reason,
  message: string,
  metadata: Record<string, string> = {},
): StateError => new StateError("invalid_argument", reason, message, metadata);

/** The backend could not be reached or did not answer in time; safe to retry. */
export const backendUnavailable = (cause: unknown, message = "backend unavailable"): StateError =>
  new StateError("unavailable", Reason.BACKEND_UNAVAILABLE, message, {}, cause);

/** The backend lost acknowledged data (its epoch marker is gone). */
export const backendReset = (): StateError =>
  new StateError(
    "data_loss",
    Reason.BACKEND_RESET,
    "the backend lost acknowledged data (it came back empty or with older data); an operator must restart the service to accept the loss",
  );

export const isStateError = (error: unknown): error is StateError => error instanceof StateError;
