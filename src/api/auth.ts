/**
 * Bearer-token authentication. The tokens file maps each token to a tenant
 * and roles; without a file, auth is off and every call is tenant `default`
 * with every role. Tokens are compared by SHA-256 digest, so the file may
 * hold digests instead of secrets.
 *
 * File format (JSON):
 *   { "tokens": [ { "token": "s3cret", "tenant": "acme", "roles": ["read", "write"] },
 *                 { "sha256": "<hex digest of a token>", "tenant": "ops", "roles": ["admin"] } ] }
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { Reason, StateError } from "../core/errors.js";
import type { Tenant } from "../core/model.js";

export type Role = "read" | "write" | "admin";
const ROLES: readonly Role[] = ["read", "write", "admin"];

export interface Principal {
  readonly tenant: Tenant;
  readonly roles: ReadonlySet<Role>;
}

export const DEFAULT_TENANT = "default";

const EVERYONE: Principal = Object.freeze({ tenant: DEFAULT_TENANT, roles: new Set<Role>(ROLES) });

export interface Authenticator {
  readonly enabled: boolean;
  /** The principal of an `authorization` header value, or UNAUTHENTICATED. */
  authenticate(authorization: string | null): Principal;
}

export const openAuthenticator: Authenticator = {
  enabled: false,
  authenticate: () => EVERYONE,
};

const TENANT_PATTERN = /^[A-Za-z0-9._-]{1,128}$/;

/** Loads and validates a tokens file; throws an Error naming the problem. */
export function loadAuthenticator(path: string): Authenticator {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, "utf8"));
  } catch (error) {
    throw new Error(`cannot read the tokens file ${path}: ${(error as Error).message}`);
  }
  const entries = (parsed as { tokens?: unknown })?.tokens;
  if (!Array.isArray(entries) || entries.length === 0) {
    throw new Error(`tokens file ${path}: expected {"tokens": [ ... ]} with at least one entry`);
  }
  const byDigest = new Map<string, Principal>();
  entries.forEach((entry: Record<string, unknown>, i) => {
    const where = `tokens file ${path}, entry ${i}`;
    const digest =
      typeof entry.sha256 === "string"
        ? entry.sha256.toLowerCase()
        : typeof entry.token === "string" && entry.token.length >= 16
          ? sha256(entry.token)
          : undefined;
    if (!digest || !/^[0-9a-f]{64}$/.test(digest)) {
      throw new Error(
        `${where}: needs "token" (at least 16 characters) or "sha256" (64 hex digits)`,
      );
    }
    if (typeof entry.tenant !== "string" || !TENANT_PATTERN.test(entry.tenant)) {
      throw new Error(`${where}: "tenant" must match ${TENANT_PATTERN}`);
    }
    const roles = entry.roles;
    if (
      !Array.isArray(roles) ||
      roles.length === 0 ||
      !roles.every((r) => ROLES.includes(r as Role))
    ) {
      throw new Error(`${where}: "roles" must be a non-empty list of ${ROLES.join(", ")}`);
    }
    if (byDigest.has(digest)) throw new Error(`${where}: duplicate token`);
    byDigest.set(digest, Object.freeze({ tenant: entry.tenant, roles: new Set(roles as Role[]) }));
  });

  return {
    enabled: true,
    authenticate(authorization) {
      const match = authorization === null ? null : /^Bearer\s+(\S+)\s*$/i.exec(authorization);
      if (!match) {
        throw new StateError(
          "unauthenticated",
          Reason.UNAUTHENTICATED,
          "missing or malformed authorization: Bearer <token>",
        );
      }
      const principal = byDigest.get(sha256(match[1]!));
      if (!principal)
        throw new StateError("unauthenticated", Reason.UNAUTHENTICATED, "unknown token");
      return principal;
    },
  };
}

/** Whether the principal may call a method needing `role` (admin may do anything, write implies read). */
export function allows(principal: Principal, role: Role): boolean {
  const { roles } = principal;
  if (roles.has("admin") || roles.has(role)) return true;
  return role === "read" && roles.has("write");
}

function sha256(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}
