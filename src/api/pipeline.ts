/**
 * What every call goes through, whichever protocol path serves it (Connect's
 * adapter or the lean gRPC path): authentication and the role check, the
 * per-tenant rate limit, the default deadline, error mapping, metrics and
 * logging. It wraps a service implementation method by method, so both
 * paths call the same wrapped handlers and no Connect interceptor is needed.
 */
import type { DescMethod, DescService } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  createContextKey,
  type HandlerContext,
  type ServiceImpl,
} from "@connectrpc/connect";
import type { Logger } from "pino";
import { isStateError, Reason, StateError } from "../core/errors.js";
import type { Tenant } from "../core/model.js";
import { type Authenticator, allows, type Principal, type Role } from "./auth.js";
import { errorWithInfo, toConnectError } from "./errors.js";
import type { RpcMetrics } from "./metrics.js";
import type { TenantRateLimiter } from "./rate-limit.js";

export const PRINCIPAL = createContextKey<Principal | undefined>(undefined, {
  description: "latchkey principal",
});

/** The caller's tenant; set by the pipeline before any handler runs. */
export function tenantOf(ctx: HandlerContext): Tenant {
  const principal = ctx.values.get(PRINCIPAL);
  if (!principal)
    throw new StateError("internal", Reason.INTERNAL, "call reached a handler without a principal");
  return principal.tenant;
}

export interface PipelineOptions {
  readonly auth: Authenticator;
  readonly logger: Logger;
  readonly metrics: RpcMetrics;
  /** Deadline of unary calls that bring none. */
  readonly defaultDeadlineMs: number;
  /** Longest deadline honoured; longer ones are cut to it. */
  readonly maxDeadlineMs: number;
  /** The role each method needs; methods not listed need none (health, reflection). */
  readonly roleOf: (method: DescMethod) => Role | undefined;
  /** Per-tenant call rate limit; absent = none. Methods that need no role are never limited. */
  readonly rateLimiter?: TenantRateLimiter;
}

/** The deadline a handler should work to: the client's (capped) or the default. */
export function effectiveDeadlineMs(
  ctx: HandlerContext,
  options: Pick<PipelineOptions, "defaultDeadlineMs" | "maxDeadlineMs">,
): number {
  const requested = ctx.timeoutMs();
  return requested === undefined
    ? options.defaultDeadlineMs
    : Math.min(requested, options.maxDeadlineMs);
}

/** Wraps every method of `impl` in the pipeline. */
export function guardService<S extends DescService>(
  service: S,
  impl: ServiceImpl<S>,
  options: PipelineOptions,
): ServiceImpl<S> {
  const guarded: Record<string, unknown> = {};
  for (const method of service.methods) {
    const handler = (impl as Record<string, (...args: unknown[]) => unknown>)[
      method.localName
    ]!.bind(impl);
    guarded[method.localName] = guardMethod(method, handler, options);
  }
  return guarded as ServiceImpl<S>;
}

function guardMethod(
  method: DescMethod,
  handler: (...args: unknown[]) => unknown,
  options: PipelineOptions,
): unknown {
  const { logger, metrics } = options;
  const role = options.roleOf(method);
  const observe = metrics.forMethod(method);
  const log = (error: unknown) =>
    logger.error({ err: error, rpc: `${method.parent.typeName}/${method.name}` }, "call failed");

  const authorize = (ctx: HandlerContext): void => {
    if (role === undefined) return;
    const principal = options.auth.authenticate(
      options.auth.enabled ? ctx.requestHeader.get("authorization") : null,
    );
    if (!allows(principal, role)) {
      throw new StateError(
        "permission_denied",
        Reason.PERMISSION_DENIED,
        `this token lacks the ${role} role`,
        { role },
      );
    }
    options.rateLimiter?.admit(principal.tenant);
    ctx.values.set(PRINCIPAL, principal);
  };

  if (method.methodKind === "unary") {
    return async (request: unknown, ctx: HandlerContext) => {
      const started = performance.now();
      let code: Code | 0 = 0;
      try {
        authorize(ctx);
        return await withDeadline(
          handler(request, ctx) as Promise<unknown>,
          effectiveDeadlineMs(ctx, options),
        );
      } catch (error) {
        const mapped = toConnectError(error, log);
        code = mapped.code;
        throw mapped;
      } finally {
        observe(code, performance.now() - started);
      }
    };
  }

  // Streaming methods: the same checks, around the whole stream.
  return async function* (input: unknown, ctx: HandlerContext) {
    const started = performance.now();
    // A stream the client abandons ends through return(): record it as CANCELLED.
    let code: Code | 0 = Code.Canceled;
    try {
      authorize(ctx);
      yield* handler(input, ctx) as AsyncIterable<unknown>;
      // A stream ends by itself when its call is aborted (deadline, client
      // gone, shutdown): that is the abort's status, never OK.
      if (ctx.signal.aborted) throw streamAborted(ctx.signal.reason);
      code = 0;
    } catch (error) {
      // Once the call is aborted, what the stream threw (a premature close of
      // the request, say) is a consequence: the abort is the status.
      const mapped = toConnectError(
        ctx.signal.aborted ? streamAborted(ctx.signal.reason) : error,
        log,
      );
      code = mapped.code;
      throw mapped;
    } finally {
      observe(code, performance.now() - started);
    }
  };
}

/** The error a stream ends with when its call's signal aborted with `reason`. */
function streamAborted(reason: unknown): unknown {
  if (reason instanceof ConnectError || isStateError(reason)) return reason;
  return new StateError("cancelled", Reason.CANCELLED, "the call was cancelled");
}

/** Settles like `work`, or DEADLINE_EXCEEDED once `ms` have passed. */
function withDeadline<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          errorWithInfo(
            Code.DeadlineExceeded,
            Reason.DEADLINE_EXCEEDED,
            `deadline of ${ms} ms exceeded`,
          ),
        ),
      ms,
    );
  });
  return Promise.race([work, deadline]).finally(() => clearTimeout(timer));
}
