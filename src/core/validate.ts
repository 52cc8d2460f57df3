/**
 * Request rules shared by every service. Each failure is INVALID_ARGUMENT
 * with the contract's reason and a `field` in metadata.
 */
import { invalidArgument, Reason } from "./errors.js";
import { utf8Length } from "./keys.js";
import type { Limits } from "./limits.js";
import { LOCK_EVENT_PREFIX, SNAPSHOT_EVENT_PREFIX } from "./model.js";

/** Checks a key-like name: 1..maxKeyBytes UTF-8 bytes, well-formed, no NUL. */
export function checkName(value: string, field: string, limits: Limits, allowEmpty = false): void {
  if (value.length === 0) {
    if (allowEmpty) return;
    throw invalidArgument(Reason.INVALID_KEY, `${field} must not be empty`, { field });
  }
  const bytes = utf8Length(value);
  if (bytes > limits.maxKeyBytes) {
    throw invalidArgument(
      Reason.INVALID_KEY,
      `${field} is ${bytes} bytes; the limit is ${limits.maxKeyBytes}`,
      { field, limit: String(limits.maxKeyBytes), size: String(bytes) },
    );
  }
  if (value.includes("\0")) {
    throw invalidArgument(Reason.INVALID_KEY, `${field} must not contain NUL`, { field });
  }
  if (!value.isWellFormed()) {
    throw invalidArgument(Reason.INVALID_KEY, `${field} is not valid UTF-8 (lone surrogate)`, {
      field,
    });
  }
}

/** Checks a KV key: a name that does not use the event namespaces. */
export function checkKey(key: string, field: string, limits: Limits): void {
  checkName(key, field, limits);
  if (key.startsWith(SNAPSHOT_EVENT_PREFIX) || key.startsWith(LOCK_EVENT_PREFIX)) {
    throw invalidArgument(
      Reason.INVALID_KEY,
      `${field} must not start with the reserved prefixes ${SNAPSHOT_EVENT_PREFIX} or ${LOCK_EVENT_PREFIX}`,
      { field },
    );
  }
}

/** Checks a key bound or prefix, which may be empty but is otherwise a name. */
export function checkKeyBound(value: string, field: string, limits: Limits): void {
  checkName(value, field, limits, true);
}

export function checkBytes(size: number, limit: number, field: string): void {
  if (size > limit) {
    throw invalidArgument(Reason.TOO_LARGE, `${field} is ${size} bytes; the limit is ${limit}`, {
      field,
      limit: String(limit),
      size: String(size),
    });
  }
}

/** Checks a TTL in ms: whole milliseconds within the configured bounds. */
export function checkTtl(ms: number, field: string, limits: Limits): number {
  if (!Number.isFinite(ms) || !Number.isInteger(ms)) {
    throw invalidArgument(Reason.INVALID_TTL, `${field} must be a whole number of milliseconds`, {
      field,
    });
  }
  if (ms < limits.minTtlMs || ms > limits.maxTtlMs) {
    throw invalidArgument(
      Reason.INVALID_TTL,
      `${field} must be between ${limits.minTtlMs} ms and ${limits.maxTtlMs} ms`,
      { field, min_ms: String(limits.minTtlMs), max_ms: String(limits.maxTtlMs) },
    );
  }
  return ms;
}

/** Checks a non-negative integer field (ids, revisions, tokens, counts). */
export function checkNonNegative(value: number, field: string): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw invalidArgument(Reason.INVALID_ARGUMENT, `${field} must be a non-negative integer`, {
      field,
    });
  }
}

export function argumentError(field: string, message: string): Error {
  return invalidArgument(Reason.INVALID_ARGUMENT, message, { field });
}
