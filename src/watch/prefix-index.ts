/**
 * A prefix index for the fan-out hub: which stored prefixes start a given
 * key, without scanning every prefix. It is a radix tree (path-compressed
 * trie) over UTF-16 code units: a lookup costs O(key length) whatever the
 * number of prefixes or of their distinct lengths, and memory is O(number of
 * prefixes) (each node holds the slice of the prefix that leads to it).
 *
 * Code units, not code points: for well-formed strings (keys and prefixes
 * are checked to be well-formed) "`key` starts with `prefix`" means the same
 * in UTF-16 units, in code points and in UTF-8 bytes, because a well-formed
 * prefix never ends inside a surrogate pair. A node boundary may fall inside
 * a pair (two prefixes sharing a high surrogate); that does not matter, as
 * only whole stored prefixes report a match.
 */

interface Node<T> {
  /** The code units from the parent to this node (empty only at the root). */
  label: string;
  /** The value stored for the prefix ending here, if any. */
  value: T | undefined;
  /** Children by the first code unit of their label. */
  children: Map<number, Node<T>> | undefined;
}

const newNode = <T>(label: string): Node<T> => ({ label, value: undefined, children: undefined });

/** Length of the common prefix of `label` and `key.slice(from)`. */
function commonLength(label: string, key: string, from: number): number {
  const n = Math.min(label.length, key.length - from);
  let i = 0;
  while (i < n && label.charCodeAt(i) === key.charCodeAt(from + i)) i++;
  return i;
}

export class PrefixIndex<T> {
  private readonly root: Node<T> = newNode("");
  private count = 0;

  /** Stored prefixes. */
  get size(): number {
    return this.count;
  }

  get(prefix: string): T | undefined {
    let node = this.root;
    let i = 0;
    while (i < prefix.length) {
      const child = node.children?.get(prefix.charCodeAt(i));
      if (child === undefined || !prefix.startsWith(child.label, i)) return undefined;
      i += child.label.length;
      node = child;
    }
    return i === prefix.length ? node.value : undefined;
  }

  set(prefix: string, value: T): void {
    let node = this.root;
    let i = 0;
    while (i < prefix.length) {
      const unit = prefix.charCodeAt(i);
      node.children ??= new Map();
      const child = node.children.get(unit);
      if (child === undefined) {
        const leaf = newNode<T>(prefix.slice(i));
        node.children.set(unit, leaf);
        node = leaf;
        break;
      }
      const common = commonLength(child.label, prefix, i);
      if (common < child.label.length) {
        // Split the edge: parent -> middle (common part) -> child (the rest).
        const middle = newNode<T>(child.label.slice(0, common));
        child.label = child.label.slice(common);
        middle.children = new Map([[child.label.charCodeAt(0), child]]);
        node.children.set(unit, middle);
        node = middle;
      } else {
        node = child;
      }
      i += common;
    }
    if (node.value === undefined) this.count++;
    node.value = value;
  }

  /** Removes `prefix`; false if it was not stored. */
  delete(prefix: string): boolean {
    const path: Node<T>[] = [this.root];
    let node = this.root;
    let i = 0;
    while (i < prefix.length) {
      const child = node.children?.get(prefix.charCodeAt(i));
      if (child === undefined || !prefix.startsWith(child.label, i)) return false;
      i += child.label.length;
      node = child;
      path.push(node);
    }
    if (node.value === undefined) return false;
    node.value = undefined;
    this.count--;
    // Prune: drop a node left empty, then merge a valueless node into its only child.
    for (let depth = path.length - 1; depth > 0; depth--) {
      const current = path[depth]!;
      const parent = path[depth - 1]!;
      if (current.value !== undefined) break;
      const size = current.children?.size ?? 0;
      if (size === 0) {
        parent.children!.delete(current.label.charCodeAt(0));
        if (parent.children!.size === 0) parent.children = undefined;
        continue; // the parent may now be mergeable or empty
      }
      if (size === 1) {
        const only = current.children!.values().next().value!;
        only.label = current.label + only.label;
        parent.children!.set(only.label.charCodeAt(0), only);
      }
      break;
    }
    return true;
  }

  /** Appends to `out` the value of every stored prefix of `key` (shortest first). */
  collect(key: string, out: T[]): void {
    let node = this.root;
    if (node.value !== undefined) out.push(node.value);
    let i = 0;
    while (i < key.length) {
      const child = node.children?.get(key.charCodeAt(i));
      if (child === undefined || !key.startsWith(child.label, i)) return;
      i += child.label.length;
      node = child;
      if (node.value !== undefined) out.push(node.value);
    }
  }

  /** Every stored value (any order). */
  *values(): IterableIterator<T> {
    const stack: Node<T>[] = [this.root];
    for (let node = stack.pop(); node !== undefined; node = stack.pop()) {
      if (node.value !== undefined) yield node.value;
      if (node.children) for (const child of node.children.values()) stack.push(child);
    }
  }
}
