// Free-space map of one pool: a bitmap of physical blocks. Frees are deferred until the metadata
// that stops referencing a block is durable, so a crash can never find a block reused under it.

export interface BlockRun {
  start: number;
  count: number;
}

/**
 * Requests of at least this many blocks first look for free space in whole free bitmap words (32
 * blocks each), so that they stay contiguous. Small random overwrites free single blocks all over
 * the pool; a 1 MiB write gathered from those would become 256 one-block writes and journal runs.
 */
const RUN_MIN_BLOCKS = 16;
/** How far (in bitmap words, 32 blocks each) the search for whole free words goes: about 1 GiB. */
const RUN_SEARCH_WORDS = 8192;

export class BlockAllocator {
  private readonly words: Uint32Array;
  /** Where the next allocation from scattered free blocks starts looking. */
  private cursor = 0;
  /** Where the next search for whole free words starts (a word index). */
  private runCursor = 0;
  private usedCount = 0;
  /**
   * Freed in memory, not yet reusable: the journal record that freed them (its sequence number is
   * kept beside the block) may not be durable yet. Entries [0, pendingLength) of arrays that only
   * grow: plain arrays cut back at each sync and grown again by every overwrite were reallocated
   * (fresh pages, copies) many times a second under random writes.
   */
  private pendingBlocks: Float64Array = new Float64Array(1024);
  private pendingSeqs: Float64Array = new Float64Array(1024);
  private pendingLength = 0;

  constructor(readonly totalBlocks: number) {
    this.words = new Uint32Array(Math.ceil(totalBlocks / 32));
    // Bits past the end are permanently "used" so the scan never hands them out.
    for (let b = totalBlocks; b < this.words.length * 32; b++) this.words[b >>> 5] |= 1 << (b & 31);
  }

  get usedBlocks(): number {
    return this.usedCount;
  }

  get freeBlocks(): number {
    return this.totalBlocks - this.usedCount;
  }

  /** Blocks that a sync would make reusable. */
  get pendingCount(): number {
    return this.pendingLength;
  }

  isUsed(block: number): boolean {
    return (this.words[block >>> 5] & (1 << (block & 31))) !== 0;
  }

  /** Marks a block used while rebuilding the map from metadata. */
  markUsed(block: number): void {
    if (block >= this.totalBlocks) throw new Error(`block ${block} is outside the pool (${this.totalBlocks} blocks)`);
    if (this.isUsed(block)) throw new Error(`block ${block} is referenced twice`);
    this.words[block >>> 5] |= 1 << (block & 31);
    this.usedCount++;
  }

  /**
   * Allocates count blocks. A large request (RUN_MIN_BLOCKS or more) takes one run of whole free
   * words when there is one near the last such allocation, so sequential writes land contiguously.
   * Otherwise the blocks come from wherever they are free, in as few runs as the free space allows,
   * continuing where the last allocation ended. Returns undefined if the pool has fewer than count
   * free blocks (nothing is allocated then).
   */
  allocate(count: number): BlockRun[] | undefined {
    if (count > this.freeBlocks) return undefined;
    const start = count >= RUN_MIN_BLOCKS ? this.findFreeWords(Math.ceil(count / 32)) : undefined;
    if (start !== undefined) {
      for (let b = start; b < start + count; b++) this.words[b >>> 5] |= 1 << (b & 31);
      this.usedCount += count;
      this.runCursor = (start + count) >>> 5;
      return [{ start, count }];
    }
    return this.gather(count);
  }

  /** The first block of `wanted` consecutive free words, searching RUN_SEARCH_WORDS from runCursor. */
  private findFreeWords(wanted: number): number | undefined {
    const total = this.words.length;
    let found = 0;
    for (let scanned = 0, w = this.runCursor; scanned < Math.min(RUN_SEARCH_WORDS, total); scanned++, w++) {
      if (w >= total) (w = 0), (found = 0); // a run does not wrap around the end of the pool
      found = this.words[w] === 0 ? found + 1 : 0;
      if (found === wanted) return (w + 1 - wanted) * 32;
    }
    return undefined;
  }

  /** Allocates count blocks from wherever they are free, in as few runs as the free space allows. */
  private gather(count: number): BlockRun[] {
    const runs: BlockRun[] = [];
    let needed = count;
    let block = this.cursor;
    let scanned = 0;
    while (needed > 0 && scanned <= this.totalBlocks) {
      if (block >= this.totalBlocks) block = 0;
      const word = this.words[block >>> 5];
      if (word === 0xffffffff && (block & 31) === 0) {
        // A full word: skip it, counting only the pool's blocks in it (the last word may be partly
        // padding), so that one pass looks at every block once.
        const next = Math.min(block + 32, this.totalBlocks);
        scanned += next - block;
        block = next;
        continue;
      }
      if (!this.isUsed(block)) {
        this.words[block >>> 5] |= 1 << (block & 31);
        const last = runs[runs.length - 1];
        if (last && last.start + last.count === block) last.count++;
        else runs.push({ start: block, count: 1 });
        needed--;
      }
      block++;
      scanned++;
    }
    if (needed > 0) throw new Error(`allocator: ${this.freeBlocks} blocks counted free, but a full pass found only ${count - needed}`);
    this.usedCount += count;
    this.cursor = block;
    return runs;
  }

  /** Frees a block at once: only for blocks that no durable metadata ever referenced. */
  freeNow(block: number): void {
    this.words[block >>> 5] &= ~(1 << (block & 31));
    this.usedCount--;
  }

  /** Frees a block once journal record seq (the one that dropped it) is durable. */
  freeAfterSync(block: number, seq: number): void {
    if (this.pendingLength === this.pendingBlocks.length) {
      this.pendingBlocks = grown(this.pendingBlocks);
      this.pendingSeqs = grown(this.pendingSeqs);
    }
    this.pendingBlocks[this.pendingLength] = block;
    this.pendingSeqs[this.pendingLength++] = seq;
  }

  /** Called once every journal record up to seq is durable. */
  releaseUpTo(seq: number): void {
    this.keepPending((block, pendingSeq) => {
      if (pendingSeq > seq) return true;
      this.freeNow(block);
      return false;
    });
  }

  private keepPending(keep: (block: number, seq: number) => boolean): void {
    let kept = 0;
    for (let i = 0; i < this.pendingLength; i++) {
      if (!keep(this.pendingBlocks[i], this.pendingSeqs[i])) continue;
      this.pendingBlocks[kept] = this.pendingBlocks[i];
      this.pendingSeqs[kept++] = this.pendingSeqs[i];
    }
    this.pendingLength = kept;
  }

  /** After a checkpoint nothing durable references pending blocks any more. */
  releaseAll(): void {
    this.releaseUpTo(Number.MAX_SAFE_INTEGER);
  }
}

/** A copy of values with twice the room. */
function grown(values: Float64Array): Float64Array {
  const bigger = new Float64Array(values.length * 2);
  bigger.set(values);
  return bigger;
}
