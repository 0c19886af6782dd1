// One layer's map from logical block to physical block, with the block's checksum. Sparse: kept
// in chunks of 1024 entries that exist only once something in them is mapped. A snapshot shares the
// chunks (copy-on-write), so that a checkpoint can encode the map while writes go on changing it.

/** Entry values. A physical block p is stored as p + FIRST_PHYSICAL. */
export const ABSENT = 0; // not in this layer: look in the parent
export const ZERO = 1; // reads as zeroes, hides the parent (trim / write-zeroes)
export const FIRST_PHYSICAL = 2;

const CHUNK_SHIFT = 10;
export const CHUNK_ENTRIES = 1 << CHUNK_SHIFT;
const CHUNK_MASK = CHUNK_ENTRIES - 1;

interface Chunk {
  values: Uint32Array;
  crcs: Uint32Array;
  used: number;
  /** Held by a snapshot too: frozen, copied by the first set() that changes it. */
  shared: boolean;
}

export class BlockMap {
  private readonly chunks = new Map<number, Chunk>();
  /** Entries holding a physical block (not ABSENT, not ZERO). */
  private physicalCount = 0;

  get physicalBlocks(): number {
    return this.physicalCount;
  }

  value(block: number): number {
    const chunk = this.chunks.get(block >>> CHUNK_SHIFT);
    return chunk === undefined ? ABSENT : chunk.values[block & CHUNK_MASK];
  }

  crc(block: number): number {
    const chunk = this.chunks.get(block >>> CHUNK_SHIFT);
    return chunk === undefined ? 0 : chunk.crcs[block & CHUNK_MASK];
  }

  /** The chunk holding block, if any, for loops over many neighbouring blocks (read only). */
  chunk(block: number): { values: Uint32Array; crcs: Uint32Array } | undefined {
    return this.chunks.get(block >>> CHUNK_SHIFT);
  }

  /** Sets an entry and returns the value it replaced. */
  set(block: number, value: number, crc: number): number {
    const index = block >>> CHUNK_SHIFT;
    let chunk = this.chunks.get(index);
    if (chunk === undefined) {
      if (value === ABSENT) return ABSENT;
      chunk = { values: new Uint32Array(CHUNK_ENTRIES), crcs: new Uint32Array(CHUNK_ENTRIES), used: 0, shared: false };
      this.chunks.set(index, chunk);
    } else if (chunk.shared) {
      chunk = { values: chunk.values.slice(), crcs: chunk.crcs.slice(), used: chunk.used, shared: false };
      this.chunks.set(index, chunk);
    }
    const slot = block & CHUNK_MASK;
    const old = chunk.values[slot];
    chunk.values[slot] = value;
    chunk.crcs[slot] = crc;
    if (old === ABSENT && value !== ABSENT) chunk.used++;
    if (old !== ABSENT && value === ABSENT) chunk.used--;
    if (old >= FIRST_PHYSICAL) this.physicalCount--;
    if (value >= FIRST_PHYSICAL) this.physicalCount++;
    if (chunk.used === 0) this.chunks.delete(index);
    return old;
  }

  /**
   * A copy as the map is now, in O(chunks): both share every chunk, and whichever changes a chunk
   * first copies it (a chunk stays marked shared after the snapshot is dropped, so the map copies it
   * once more than needed: cheaper than tracking who still holds it).
   */
  snapshot(): BlockMap {
    const copy = new BlockMap();
    for (const [index, chunk] of this.chunks) {
      chunk.shared = true;
      copy.chunks.set(index, chunk);
    }
    copy.physicalCount = this.physicalCount;
    return copy;
  }

  /** The chunks that hold entries, by index (block / CHUNK_ENTRIES), in no particular order (read only). */
  chunkEntries(): IterableIterator<[number, { values: Uint32Array; crcs: Uint32Array; used: number }]> {
    return this.chunks.entries();
  }

  /** Calls fn for every entry that is not ABSENT, in no particular order. */
  forEach(fn: (block: number, value: number, crc: number) => void): void {
    for (const [index, chunk] of this.chunks) {
      // Multiplied, not shifted: block numbers go up to 2^32, and a shift would make those from
      // 2^31 on negative (JavaScript shifts work on signed 32-bit integers).
      const base = index * CHUNK_ENTRIES;
      for (let slot = 0; slot < CHUNK_ENTRIES; slot++) {
        const value = chunk.values[slot];
        if (value !== ABSENT) fn(base + slot, value, chunk.crcs[slot]);
      }
    }
  }

  /** Entries not ABSENT. */
  get size(): number {
    let n = 0;
    for (const chunk of this.chunks.values()) n += chunk.used;
    return n;
  }
}
