/**
 * Opaque page tokens: a cursor (the last item returned) bound to the query
 * it came from, so a token reused with another query is refused instead of
 * silently paging something else.
 */
import { createHash } from "node:crypto";
import { invalidArgument, Reason } from "./errors.js";

const VERSION = 1;

function fingerprint(query: string): string {
  return createHash("sha256").update(query).digest("base64url").slice(0, 12);
}

export function encodePageToken(cursor: string, query: string): string {
  return Buffer.from(JSON.stringify([VERSION, fingerprint(query), cursor])).toString("base64url");
}

/** Returns the cursor of `token`, or throws INVALID_ARGUMENT INVALID_PAGE_TOKEN. */
export function decodePageToken(token: string, query: string): string {
  const bad = () =>
    invalidArgument(
      Reason.INVALID_PAGE_TOKEN,
      "page_token is malformed or belongs to another query",
      {
        field: "page_token",
      },
    );
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
  } catch {
    throw bad();
  }
  if (
    !Array.isArray(parsed) ||
    parsed.length !== 3 ||
    parsed[0] !== VERSION ||
    parsed[1] !== fingerprint(query) ||
    typeof parsed[2] !== "string"
  ) {
    throw bad();
  }
  return parsed[2];
}
