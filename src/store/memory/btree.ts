/**
 * sorted-btree is CommonJS with `exports.default = BTree`; Node's ESM loader
 * hands us `module.exports` while bundler-style loaders (vitest) hand us the
 * class itself. Resolve both once here.
 */
import sortedBtree from "sorted-btree";

type BTreeClass = typeof sortedBtree.default;
const loaded = sortedBtree as unknown as BTreeClass | { default: BTreeClass };
export const BTree: BTreeClass = "default" in loaded ? loaded.default : loaded;
