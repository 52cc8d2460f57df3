/**
 * A safety checker for lock histories recorded by clients (all on one
 * machine, so on one clock). It finds:
 *
 * - overlaps: two grants of one name whose holding periods intersect. A
 *   holder holds from the moment its client got the grant until the earlier
 *   of the lock's expire_time (the validity end) and the moment it started
 *   to release. A grant that reached its client after its validity end was
 *   never held (counted as `lateGrants`).
 * - token order: for held grants of one name in the order they were held,
 *   fencing tokens must strictly increase.
 * - stale writes: a fenced write the store accepted (at revision r) with a
 *   token lower than a token already granted for that name (at a revision
 *   below r). Grants and writes share the tenant's revision counter.
 */

export interface RecordedGrant {
  readonly name: string;
  readonly owner: string;
  readonly token: number;
  /** When the client called Acquire (ms epoch). */
  readonly callStart: number;
  /** When the client got the grant. */
  readonly grantedAt: number;
  /** The lock's expire_time (validity end). */
  readonly expireAt: number;
  /** When the client started to release it; undefined = never released. */
  releaseAt?: number;
  /** header.revision of the Acquire response (the LOCK_ACQUIRED revision). */
  readonly grantRevision: number;
  /** The fenced write made while holding, if any. */
  write?: RecordedWrite;
}

export interface RecordedWrite {
  readonly accepted: boolean;
  /** Revision of the accepted write. */
  readonly revision?: number;
  /** Error reason when refused, e.g. FENCE_STALE. */
  readonly reason?: string;
}

export interface Violation {
  readonly kind: "overlap" | "token_order" | "stale_write";
  readonly name: string;
  readonly detail: string;
}

export interface SafetyReport {
  readonly grantsChecked: number;
  readonly lateGrants: number;
  readonly writesAccepted: number;
  readonly writesRefusedStale: number;
  readonly violations: readonly Violation[];
}

const heldUntil = (g: RecordedGrant) =>
  Math.min(g.expireAt, g.releaseAt ?? Number.POSITIVE_INFINITY);

export function checkLockSafety(grants: readonly RecordedGrant[]): SafetyReport {
  const byName = new Map<string, RecordedGrant[]>();
  for (const g of grants) {
    let list = byName.get(g.name);
    if (!list) {
      list = [];
      byName.set(g.name, list);
    }
    list.push(g);
  }
  const violations: Violation[] = [];
  let lateGrants = 0;
  let writesAccepted = 0;
  let writesRefusedStale = 0;
  for (const [name, list] of byName) {
    const held = list.filter((g) => g.grantedAt < heldUntil(g));
    lateGrants += list.length - held.length;
    held.sort((a, b) => a.grantedAt - b.grantedAt);
    // Overlaps: sweep in holding order, keeping the holder that ends last so far.
    let last: RecordedGrant | undefined;
    for (const g of held) {
      if (last && g.grantedAt < heldUntil(last)) {
        violations.push({
          kind: "overlap",
          name,
          detail: `${last.owner} (token ${last.token}) held until ${heldUntil(last)}, ${g.owner} (token ${g.token}) from ${g.grantedAt}`,
        });
      }
      if (!last || heldUntil(g) > heldUntil(last)) last = g;
    }
    for (let i = 1; i < held.length; i++) {
      const a = held[i - 1]!;
      const b = held[i]!;
      if (b.token <= a.token) {
        violations.push({
          kind: "token_order",
          name,
          detail: `${b.owner} held after ${a.owner} with token ${b.token} <= ${a.token}`,
        });
      }
    }
    // Stale writes: accepted although a higher token was granted at an earlier revision.
    const granted = [...list].sort((a, b) => a.grantRevision - b.grantRevision);
    for (const g of list) {
      const w = g.write;
      if (!w) continue;
      if (!w.accepted) {
        if (w.reason === "FENCE_STALE") writesRefusedStale++;
        continue;
      }
      writesAccepted++;
      const newer = granted.find((o) => o.grantRevision < w.revision! && o.token > g.token);
      if (newer) {
        violations.push({
          kind: "stale_write",
          name,
          detail: `write with token ${g.token} accepted at revision ${w.revision} after token ${newer.token} was granted at revision ${newer.grantRevision}`,
        });
      }
    }
  }
  return {
    grantsChecked: grants.length,
    lateGrants,
    writesAccepted,
    writesRefusedStale,
    violations,
  };
}
