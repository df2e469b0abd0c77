/**
 * A set of strings kept in ascending order by UTF-16 code unit
 * (JavaScript's `<`, the order of every members page), so that a keyset
 * page of k keys after a given one costs O(log n + k), not a sort of the
 * whole set.
 *
 * The keys are held in blocks of at most SORTED_KEYS_BLOCK, in order (a
 * one-level B-tree, as Python's sortedcontainers does): add and delete cost
 * a binary search and a splice within one block, O(log n + block).
 */

/** Most keys in one block; a fuller block is split in two. */
export const SORTED_KEYS_BLOCK = 512;

export class SortedKeys {
  private readonly blocks: string[][] = [];
  private count = 0;

  get size(): number {
    return this.count;
  }

  /** Adds key; false when it was there already. */
  add(key: string): boolean {
    if (this.blocks.length === 0) {
      this.blocks.push([key]);
      this.count = 1;
      return true;
    }
    // The first block whose last key is >= key, or the last block.
    const b = Math.min(this.blockFor(key), this.blocks.length - 1);
    const block = this.blocks[b]!;
    const i = lowerBound(block, key);
    if (block[i] === key) return false;
    block.splice(i, 0, key);
    this.count++;
    if (block.length > SORTED_KEYS_BLOCK) this.blocks.splice(b + 1, 0, block.splice(block.length >> 1));
    return true;
  }

  /** Deletes key; false when it was not there. */
  delete(key: string): boolean {
    const b = this.blockFor(key);
    const block = this.blocks[b];
    if (!block) return false;
    const i = lowerBound(block, key);
    if (block[i] !== key) return false;
    block.splice(i, 1);
    this.count--;
    if (block.length === 0) this.blocks.splice(b, 1);
    return true;
  }

  /** The keys strictly after `after` ("" for all), ascending. Do not change the set while iterating. */
  *after(after: string): Generator<string> {
    let b = this.blockFor(after);
    if (b >= this.blocks.length) return;
    let i = upperBound(this.blocks[b]!, after);
    for (; b < this.blocks.length; b++, i = 0) {
      const block = this.blocks[b]!;
      for (; i < block.length; i++) yield block[i]!;
    }
  }

  /** The index of the first block whose last key is >= key (blocks.length when none). */
  private blockFor(key: string): number {
    return firstIndex(this.blocks.length, (i) => this.blocks[i]!.at(-1)! >= key);
  }
}

/** The first index of a block whose key is >= key. */
function lowerBound(a: readonly string[], key: string): number {
  return firstIndex(a.length, (i) => a[i]! >= key);
}

/** The first index of a block whose key is > key. */
function upperBound(a: readonly string[], key: string): number {
  return firstIndex(a.length, (i) => a[i]! > key);
}

/** The first i in [0, n) for which test holds (n when none), for a test that is false then true: a binary search. */
function firstIndex(n: number, test: (i: number) => boolean): number {
  let lo = 0;
  let hi = n;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (test(mid)) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}
