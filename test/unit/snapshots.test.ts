/** core/snapshots.ts helpers: List order keys, state encoding, resume tokens. */
import { randomBytes } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { compareKeys } from "../../src/core/keys.js";
import {
  decodeState,
  encodeState,
  hashResumeToken,
  listOrderBound,
  listOrderKey,
  newResumeToken,
} from "../../src/core/snapshots.js";

describe("listOrderKey", () => {
  it("sorts bytewise as (update time desc, execution id asc)", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 2 ** 50 }),
        fc.string({ minLength: 1 }),
        fc.integer({ min: 0, max: 2 ** 50 }),
        fc.string({ minLength: 1 }),
        (t1, id1, t2, id2) => {
          const order = Math.sign(compareKeys(listOrderKey(t1, id1), listOrderKey(t2, id2)));
          const expected = t1 !== t2 ? Math.sign(t2 - t1) : Math.sign(compareKeys(id1, id2));
          expect(order).toBe(expected);
        },
      ),
    );
  });

  it("bounds: every key updated before t sorts at or after listOrderBound(t)", () => {
    const t = 1_732_000_000_123;
    expect(compareKeys(listOrderKey(t - 1, "\u0000"), listOrderBound(t))).toBeGreaterThan(0);
    expect(compareKeys(listOrderKey(t, "\u{10FFFF}"), listOrderBound(t))).toBeLessThan(0);
    expect(listOrderKey(t, "a")).toBe("9005467254740868:a");
  });
});

describe("encodeState", () => {
  it("keeps small and incompressible states as sent, compresses the rest, round-trips all", async () => {
    const json = new TextEncoder().encode(JSON.stringify({ items: Array(5000).fill({ a: 1 }) }));
    const small = await encodeState(json.slice(0, 1000), 16 * 1024);
    expect(small.encoding).toBe("identity");
    const big = await encodeState(json, 16 * 1024);
    expect(big.encoding).toBe("br");
    expect(big.bytes.length).toBeLessThan(json.length / 10);
    expect(Buffer.compare(await decodeState(big), json)).toBe(0);
    const noise = randomBytes(512 * 1024);
    const random = await encodeState(noise, 16 * 1024);
    expect(random.encoding).toBe("identity");
    const large = new TextEncoder().encode("x".repeat(2 * 1024 * 1024));
    expect(Buffer.compare(await decodeState(await encodeState(large, 0)), large)).toBe(0);
  });

  it("refuses a stored state that does not inflate to its size", async () => {
    const big = await encodeState(new Uint8Array(100_000), 10);
    await expect(decodeState({ ...big, size: big.size - 1 })).rejects.toMatchObject({
      reason: "INTERNAL",
    });
  });
});

describe("resume tokens", () => {
  it("are 256-bit base64url with a prefix, stored as a SHA-256 hex hash", () => {
    const a = newResumeToken();
    const b = newResumeToken();
    expect(a.token).toMatch(/^lkrt_[A-Za-z0-9_-]{43}$/);
    expect(Buffer.from(a.token.slice(5), "base64url")).toHaveLength(32);
    expect(a.token).not.toBe(b.token);
    expect(a.hash).toBe(hashResumeToken(a.token));
    expect(a.hash).toMatch(/^[0-9a-f]{64}$/);
    expect(a.hash).not.toContain(a.token.slice(5, 15));
  });
});
