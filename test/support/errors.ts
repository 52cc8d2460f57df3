/** Assertions on Latchkey errors: gRPC code plus the ErrorInfo detail. */
import { Code, ConnectError } from "@connectrpc/connect";
import { expect } from "vitest";
import { type ErrorInfo, ErrorInfoSchema } from "../../src/gen/google/rpc/error_details_pb.js";

/** Awaits `call`, expects it to fail, and returns the error with its ErrorInfo. */
export async function failure(
  call: Promise<unknown>,
): Promise<{ error: ConnectError; info: ErrorInfo }> {
  let caught: unknown;
  try {
    await call;
  } catch (error) {
    caught = error;
  }
  expect(caught, "the call was expected to fail").toBeInstanceOf(ConnectError);
  const error = caught as ConnectError;
  const [info] = error.findDetails(ErrorInfoSchema);
  expect(info, `no ErrorInfo on ${error.message}`).toBeDefined();
  expect(info!.domain).toBe("latchkey.dev");
  return { error, info: info! };
}

/** Expects `call` to fail with `code` and `reason`; returns the ErrorInfo metadata. */
export async function expectError(
  call: Promise<unknown>,
  code: Code,
  reason: string,
): Promise<Record<string, string>> {
  const { error, info } = await failure(call);
  expect({ code: Code[error.code], reason: info.reason }).toEqual({ code: Code[code], reason });
  return info.metadata;
}
