/**
 * RFC 7396 JSON merge patch over JSON text, preserving what the patch does
 * not touch byte for byte.
 *
 * Going through JSON.parse and JSON.stringify would round numbers to
 * doubles (an id like 12345678901234567890 would silently change), reorder
 * integer-like keys and drop the document's own spelling. Instead, both
 * documents are first validated with JSON.parse (strict RFC 8259), then only
 * the objects on the patch's paths are split into members, whose values stay
 * raw source slices: untouched members keep their exact text, members the
 * patch sets take the patch's text, and removed members disappear. Only the
 * objects the patch descends into are rewritten (compactly).
 */

/** Thrown when a text is not a JSON document; `which` says which one. */
export class JsonSyntaxError extends Error {
  override readonly name = "JsonSyntaxError";
  constructor(readonly which: "target" | "patch") {
    super(`the ${which} is not a JSON document`);
  }
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const COMMA = 0x2c;
const COLON = 0x3a;

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

/** Whether `text` is one JSON document (RFC 8259, as JSON.parse reads it). */
export function isJson(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

/**
 * Applies `patch` to `target` (both JSON texts) and returns the merged text.
 * Throws JsonSyntaxError when either is not JSON.
 */
export function applyMergePatch(target: string, patch: string): string {
  if (!isJson(patch)) throw new JsonSyntaxError("patch");
  if (!isJson(target)) throw new JsonSyntaxError("target");
  return merge(trim(target), trim(patch));
}

/** The merge of two valid, trimmed JSON texts; `target` undefined = absent. */
function merge(target: string | undefined, patch: string): string {
  if (patch.charCodeAt(0) !== OPEN_BRACE) return patch;
  const members: (Member | undefined)[] =
    target !== undefined && target.charCodeAt(0) === OPEN_BRACE ? splitObject(target) : [];
  const index = new Map<string, number>();
  for (const [i, member] of members.entries()) index.set(member![0], i);
  for (const [key, keyRaw, value] of splitObject(patch)) {
    const at = index.get(key);
    if (value === "null") {
      if (at !== undefined) {
        members[at] = undefined;
        index.delete(key);
      }
      continue;
    }
    if (at !== undefined) {
      const current = members[at]!;
      members[at] = [key, current[1], merge(current[2], value)];
    } else {
      index.set(key, members.length);
      members.push([key, keyRaw, merge(undefined, value)]);
    }
  }
  let out = "{";
  for (const member of members) {
    if (member === undefined) continue;
    if (out.length > 1) out += ",";
    out += `${member[1]}:${member[2]}`;
  }
  return `${out}}`;
}

type Member = [key: string, keyRaw: string, value: string];

/**
 * The members of a valid object text: decoded key, raw key and raw value, in
 * order. A repeated key keeps its first position and takes the last value, as
 * JSON.parse reads it.
 */
function splitObject(text: string): Member[] {
  const members: Member[] = [];
  const seen = new Map<string, number>();
  let i = skipSpace(text, 1);
  if (text.charCodeAt(i) === CLOSE_BRACE) return members;
  for (;;) {
    const keyStart = i;
    i = skipString(text, i);
    const keyRaw = text.slice(keyStart, i);
    // Past the colon (the text is valid JSON).
    i = skipSpace(text, skipSpace(text, i) + 1);
    const valueStart = i;
    i = skipValue(text, i);
    const key = JSON.parse(keyRaw) as string;
    const value = text.slice(valueStart, i);
    const earlier = seen.get(key);
    if (earlier === undefined) {
      seen.set(key, members.length);
      members.push([key, keyRaw, value]);
    } else {
      members[earlier] = [key, members[earlier]![1], value];
    }
    i = skipSpace(text, i);
    if (text.charCodeAt(i) !== COMMA) return members;
    i = skipSpace(text, i + 1);
  }
}

function trim(text: string): string {
  let start = 0;
  let end = text.length;
  while (start < end && isSpace(text.charCodeAt(start))) start++;
  while (end > start && isSpace(text.charCodeAt(end - 1))) end--;
  return start === 0 && end === text.length ? text : text.slice(start, end);
}

function skipSpace(text: string, i: number): number {
  while (i < text.length && isSpace(text.charCodeAt(i))) i++;
  return i;
}

/** The index after the string starting at `i` (a quote). */
function skipString(text: string, i: number): number {
  let j = i + 1;
  for (;;) {
    const q = text.indexOf('"', j);
    // An escaped quote is preceded by an odd number of backslashes.
    let slashes = 0;
    for (let k = q - 1; text.charCodeAt(k) === BACKSLASH; k--) slashes++;
    if (slashes % 2 === 0) return q + 1;
    j = q + 1;
  }
}

/** The index after the value starting at `i`. */
function skipValue(text: string, i: number): number {
  const c = text.charCodeAt(i);
  if (c === QUOTE) return skipString(text, i);
  if (c === OPEN_BRACE || c === OPEN_BRACKET) {
    let depth = 0;
    let j = i;
    while (j < text.length) {
      const d = text.charCodeAt(j);
      if (d === QUOTE) {
        j = skipString(text, j);
        continue;
      }
      if (d === OPEN_BRACE || d === OPEN_BRACKET) depth++;
      else if (d === CLOSE_BRACE || d === CLOSE_BRACKET) {
        depth--;
        if (depth === 0) return j + 1;
      }
      j++;
    }
    return j;
  }
  // A number, true, false or null: up to the next delimiter.
  let j = i;
  while (j < text.length) {
    const d = text.charCodeAt(j);
    if (d === COMMA || d === CLOSE_BRACE || d === CLOSE_BRACKET || d === COLON || isSpace(d)) break;
    j++;
  }
  return j;
}
