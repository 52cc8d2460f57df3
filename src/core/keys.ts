/**
 * Key rules shared by every backend: bytewise UTF-8 order and prefix bounds.
 */

/**
 * Compares two strings in the order of their UTF-8 bytes (code point order),
 * as Redis's ZRANGE BYLEX does. JavaScript's `<` compares UTF-16 units and
 * puts U+E000..U+FFFF after supplementary characters; this does not.
 */
export function compareKeys(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    // Surrogates (U+D800..U+DFFF) encode code points above U+FFFF, which sort
    // after every BMP character; lift them above the rest of the BMP.
    const xs = x >= 0xd800 && x <= 0xdfff ? x + 0x10000 : x;
    const ys = y >= 0xd800 && y <= 0xdfff ? y + 0x10000 : y;
    return xs < ys ? -1 : 1;
  }
  return a.length - b.length;
}

/**
 * The smallest key greater than every key starting with `prefix`, or
 * undefined when there is none (the prefix is empty or only U+10FFFF).
 */
export function prefixEnd(prefix: string): string | undefined {
  const points = Array.from(prefix);
  while (points.length > 0) {
    const last = points.pop()!;
    const cp = last.codePointAt(0)!;
    if (cp < 0x10ffff) {
      // Skip the surrogate range: it holds no scalar values.
      const next = cp + 1 === 0xd800 ? 0xe000 : cp + 1;
      return points.join("") + String.fromCodePoint(next);
    }
  }
  return undefined;
}

/** Whether `key` lies in [start, end). */
export function inRange(key: string, start: string, end: string | undefined): boolean {
  return compareKeys(key, start) >= 0 && (end === undefined || compareKeys(key, end) < 0);
}

const encoder = new TextEncoder();

/** Length of the UTF-8 encoding of `s`, without allocating for ASCII. */
export function utf8Length(s: string): number {
  let ascii = true;
  for (let i = 0; i < s.length; i++) {
    if (s.charCodeAt(i) > 0x7f) {
      ascii = false;
      break;
    }
  }
  return ascii ? s.length : encoder.encode(s).length;
}
