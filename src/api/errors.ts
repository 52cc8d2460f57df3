/**
 * The one table from domain errors to wire codes (etcd's toGRPCErrorMap).
 * Every error leaving a handler passes through toConnectError: a StateError
 * keeps its safe message, reason and metadata as a google.rpc.ErrorInfo
 * detail; anything else becomes INTERNAL with a fixed message, and its text
 * is only logged.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { type ErrorCode, isStateError, Reason } from "../core/errors.js";
import { ErrorInfoSchema, RetryInfoSchema } from "../gen/google/rpc/error_details_pb.js";

export const ERROR_DOMAIN = "latchkey.dev";

const CODES: Readonly<Record<ErrorCode, Code>> = {
  invalid_argument: Code.InvalidArgument,
  not_found: Code.NotFound,
  already_exists: Code.AlreadyExists,
  aborted: Code.Aborted,
  failed_precondition: Code.FailedPrecondition,
  out_of_range: Code.OutOfRange,
  resource_exhausted: Code.ResourceExhausted,
  unauthenticated: Code.Unauthenticated,
  permission_denied: Code.PermissionDenied,
  unavailable: Code.Unavailable,
  data_loss: Code.DataLoss,
  deadline_exceeded: Code.DeadlineExceeded,
  cancelled: Code.Canceled,
  internal: Code.Internal,
};

/** Reasons for errors that Connect raises itself (deadlines, limits, bad frames). */
const CONNECT_REASONS: Partial<Record<Code, string>> = {
  [Code.DeadlineExceeded]: Reason.DEADLINE_EXCEEDED,
  [Code.Canceled]: Reason.CANCELLED,
  [Code.ResourceExhausted]: Reason.TOO_LARGE,
  [Code.InvalidArgument]: Reason.INVALID_ARGUMENT,
  [Code.Unimplemented]: "UNIMPLEMENTED",
  [Code.Unauthenticated]: Reason.UNAUTHENTICATED,
  [Code.PermissionDenied]: Reason.PERMISSION_DENIED,
  [Code.Unavailable]: Reason.BACKEND_UNAVAILABLE,
  [Code.Internal]: Reason.INTERNAL,
};

/**
 * Whether Connect raised this while decoding a request body: the client's
 * bytes are at fault, so it is INVALID_ARGUMENT (Connect itself answers
 * INTERNAL for binary bodies).
 */
export function isDecodeFailure(code: Code, message: string): boolean {
  return (
    (code === Code.Internal && message.startsWith("parse binary")) ||
    (code === Code.InvalidArgument &&
      (message.startsWith("cannot decode") || message.startsWith("parse json")))
  );
}

/**
 * Failures that are logged once where they start, not per call: every watch
 * ended by a drain (SHUTTING_DOWN), every call refused after a data loss was
 * latched (BACKEND_RESET, logged when detected).
 */
const EXPECTED_REASONS: ReadonlySet<string> = new Set([Reason.SHUTTING_DOWN, Reason.BACKEND_RESET]);

/**
 * Builds a ConnectError with an ErrorInfo detail, and a google.rpc.RetryInfo
 * when the metadata says when to retry (`retry_after_ms`), for clients that
 * honour the standard detail.
 */
export function errorWithInfo(
  code: Code,
  reason: string,
  message: string,
  metadata: Readonly<Record<string, string>> = {},
): ConnectError {
  const details: ConstructorParameters<typeof ConnectError>[3] = [
    { desc: ErrorInfoSchema, value: { reason, domain: ERROR_DOMAIN, metadata: { ...metadata } } },
  ];
  const retryAfterMs = Number(metadata.retry_after_ms);
  if (metadata.retry_after_ms !== undefined && Number.isSafeInteger(retryAfterMs)) {
    details.push({
      desc: RetryInfoSchema,
      value: {
        retryDelay: {
          seconds: BigInt(Math.floor(retryAfterMs / 1000)),
          nanos: (retryAfterMs % 1000) * 1_000_000,
        },
      },
    });
  }
  return new ConnectError(message, code, undefined, details);
}

/**
 * Maps any thrown value to a ConnectError safe to send. `log` receives the
 * errors that are not the client's fault (internal, unavailable, data loss).
 */
export function toConnectError(error: unknown, log: (error: unknown) => void): ConnectError {
  if (isStateError(error)) {
    const code = CODES[error.code];
    if (
      (code === Code.Internal || code === Code.Unavailable || code === Code.DataLoss) &&
      !EXPECTED_REASONS.has(error.reason)
    ) {
      log(error);
    }
    return errorWithInfo(code, error.reason, error.message, error.metadata);
  }
  if (error instanceof ConnectError) {
    if (error.details.length > 0) return error;
    if (isDecodeFailure(error.code, error.rawMessage)) {
      return errorWithInfo(
        Code.InvalidArgument,
        Reason.INVALID_ARGUMENT,
        "a request message does not decode",
      );
    }
    const reason = CONNECT_REASONS[error.code] ?? Reason.INTERNAL;
    if (error.code === Code.Internal || error.code === Code.Unknown) {
      log(error);
      return errorWithInfo(Code.Internal, Reason.INTERNAL, "internal error");
    }
    return errorWithInfo(error.code, reason, error.rawMessage, {});
  }
  log(error);
  return errorWithInfo(Code.Internal, Reason.INTERNAL, "internal error");
}
