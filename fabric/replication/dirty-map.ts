// The blocks a replica lacks: one bit per block, kept in chunks made when first written, so that
// its memory follows the region written while the replica was away, not the volume's size.

import { BLOCK_BYTES } from '../store/block-size';

/** Blocks per chunk: a chunk is 4 KiB of bits covering 128 MiB of volume. */
const CHUNK_BLOCKS = 32 * 1024;

/** A run of dirty blocks, in bytes. */
export interface DirtyRun {
  offsetBytes: number;
  lengthBytes: number;
}

export class DirtyMap {
  private readonly chunks = new Map<number, Uint8Array>();
  private count = 0;

  /** Dirty blocks in all. */
  get blocks(): number {
    return this.count;
  }

  get bytes(): number {
    return this.count * BLOCK_BYTES;
  }

  /** Marks every block the byte range touches. */
  mark(offsetBytes: number, lengthBytes: number): void {
    this.change(offsetBytes, lengthBytes, true);
  }

  /** Clears every block the byte range touches. */
  clear(offsetBytes: number, lengthBytes: number): void {
    this.change(offsetBytes, lengthBytes, false);
  }

  /** Marks every block that is dirty in other. */
  merge(other: DirtyMap): void {
    for (const run of other.runs()) this.mark(run.offsetBytes, run.lengthBytes);
  }

  /** The dirty blocks as runs in volume order, each at most maxBytes long. */
  *runs(maxBytes = Number.MAX_SAFE_INTEGER): Generator<DirtyRun> {
    const maxBlocks = Math.max(1, Math.floor(maxBytes / BLOCK_BYTES));
    const run = (): DirtyRun => ({ offsetBytes: start * BLOCK_BYTES, lengthBytes: length * BLOCK_BYTES });
    let start = 0;
    let length = 0;
    for (const index of [...this.chunks.keys()].sort((a, b) => a - b)) {
      const bits = this.chunks.get(index) as Uint8Array;
      for (let byte = 0; byte < bits.length; byte++) {
        if (bits[byte] === 0) continue;
        for (let bit = 0; bit < 8; bit++) {
          if ((bits[byte] & (1 << bit)) === 0) continue;
          const block = index * CHUNK_BLOCKS + byte * 8 + bit;
          if (length > 0 && block === start + length && length < maxBlocks) {
            length++;
            continue;
          }
          if (length > 0) yield run();
          start = block;
          length = 1;
        }
      }
    }
    if (length > 0) yield run();
  }

  /** Sets (dirty) or clears the bits of the blocks the byte range touches, a chunk at a time: it runs for every replicated write. */
  private change(offsetBytes: number, lengthBytes: number, dirty: boolean): void {
    const end = Math.ceil((offsetBytes + lengthBytes) / BLOCK_BYTES);
    for (let block = Math.floor(offsetBytes / BLOCK_BYTES); block < end; ) {
      const index = Math.floor(block / CHUNK_BLOCKS);
      const base = index * CHUNK_BLOCKS;
      const chunkEnd = Math.min(end, base + CHUNK_BLOCKS);
      let bits = this.chunks.get(index);
      if (!bits && dirty) this.chunks.set(index, (bits = new Uint8Array(CHUNK_BLOCKS / 8)));
      for (let i = block - base; bits && i < chunkEnd - base; i++) {
        const bit = 1 << (i & 7);
        if (((bits[i >> 3] & bit) !== 0) === dirty) continue;
        bits[i >> 3] ^= bit;
        this.count += dirty ? 1 : -1;
      }
      block = chunkEnd;
    }
  }
}
