/**
 * RFC 7396 merge patch over JSON text: the RFC's Appendix A cases, text
 * preservation (numbers, spelling, order) and a property test against a
 * plain JSON.parse implementation of the RFC's pseudocode.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { applyMergePatch, JsonSyntaxError } from "../../src/core/json-merge-patch.js";

/** The RFC's MergePatch pseudocode on parsed values (the oracle). */
function reference(target: unknown, patch: unknown): unknown {
  const isObject = (v: unknown): v is Record<string, unknown> =>
    v !== null && typeof v === "object" && !Array.isArray(v);
  if (!isObject(patch)) return patch;
  const result: Record<string, unknown> = isObject(target) ? { ...target } : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete result[key];
    // defineProperty: a plain assignment to "__proto__" would set the prototype.
    else
      Object.defineProperty(result, key, {
        value: reference(Object.hasOwn(result, key) ? result[key] : undefined, value),
        enumerable: true,
        writable: true,
        configurable: true,
      });
  }
  return result;
}

const parsed = (target: string, patch: string) => JSON.parse(applyMergePatch(target, patch));

describe("applyMergePatch", () => {
  it.each([
    ['{"a":"b"}', '{"a":"c"}', { a: "c" }],
    ['{"a":"b"}', '{"b":"c"}', { a: "b", b: "c" }],
    ['{"a":"b"}', '{"a":null}', {}],
    ['{"a":"b","b":"c"}', '{"a":null}', { b: "c" }],
    ['{"a":["b"]}', '{"a":"c"}', { a: "c" }],
    ['{"a":"c"}', '{"a":["b"]}', { a: ["b"] }],
    ['{"a":{"b":"c"}}', '{"a":{"b":"d","c":null}}', { a: { b: "d" } }],
    ['{"a":[{"b":"c"}]}', '{"a":[1]}', { a: [1] }],
    ['["a","b"]', '["c","d"]', ["c", "d"]],
    ['{"a":"b"}', '["c"]', ["c"]],
    ['{"a":"foo"}', "null", null],
    ['{"a":"foo"}', '"bar"', "bar"],
    ['{"e":null}', '{"a":1}', { e: null, a: 1 }],
    ["[1,2]", '{"a":"b","c":null}', { a: "b" }],
    ["{}", '{"a":{"bb":{"ccc":null}}}', { a: { bb: {} } }],
  ])("RFC 7396 appendix A: %s + %s", (target, patch, expected) => {
    expect(parsed(target, patch)).toEqual(expected);
  });

  it("keeps numbers, spelling and order of what the patch does not touch", () => {
    const target = '{ "id": 12345678901234567890, "f": 1.50e3, "z": "\\u00e9", "1": [ 1 , 2 ] }';
    expect(applyMergePatch(target, '{"added": 98765432109876543210}')).toBe(
      '{"id":12345678901234567890,"f":1.50e3,"z":"\\u00e9","1":[ 1 , 2 ],"added":98765432109876543210}',
    );
  });

  it("descends only where the patch has objects", () => {
    const target = '{"a": {"keep": [1, 2, 3], "drop": true}, "b": {"x": 1}}';
    expect(applyMergePatch(target, '{"a":{"drop":null,"n":0.10}}')).toBe(
      '{"a":{"keep":[1, 2, 3],"n":0.10},"b":{"x": 1}}',
    );
  });

  it("handles escapes in keys and strings, duplicates and __proto__", () => {
    const target = '{"q\\"k": "a\\\\", "d": 1, "d": 2, "__proto__": {"x": 1}}';
    const out = applyMergePatch(target, '{"q\\"k": "b", "__proto__": {"y": 2}}');
    expect(out).toBe('{"q\\"k":"b","d":2,"__proto__":{"x":1,"y":2}}');
    expect(Object.keys(JSON.parse(out))).toEqual(['q"k', "d", "__proto__"]);
  });

  it("refuses documents that are not JSON", () => {
    expect(() => applyMergePatch("{", "{}")).toThrow(JsonSyntaxError);
    expect(() => applyMergePatch("{}", "{'a':1}")).toThrowError(/patch/);
    expect(() => applyMergePatch("", "{}")).toThrowError(/target/);
    expect(() => applyMergePatch("{} {}", "{}")).toThrowError(/target/);
  });

  it("agrees with the RFC pseudocode on generated documents", () => {
    fc.assert(
      fc.property(fc.json(), fc.json(), (target, patch) => {
        expect(JSON.parse(applyMergePatch(target, patch))).toEqual(
          reference(JSON.parse(target), JSON.parse(patch)),
        );
      }),
      { numRuns: 2000 },
    );
  });

  it("patches a 16 MiB document in well under a second", () => {
    const items = Array.from({ length: 200_000 }, (_, i) => ({
      i,
      name: `item ${i}`,
      tags: ["a"],
    }));
    const target = JSON.stringify({ items, meta: { v: 1 } });
    expect(target.length).toBeGreaterThan(8 * 1024 * 1024);
    const started = performance.now();
    const out = applyMergePatch(target, '{"meta":{"v":2}}');
    const elapsed = performance.now() - started;
    expect(out.endsWith('"meta":{"v":2}}')).toBe(true);
    expect(elapsed).toBeLessThan(1000);
  });
});
