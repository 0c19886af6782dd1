// The blocks a replica lacks: one bit per block, kept in chunks made when first written, so that
// its memory follows the region written while the replica was away, not the volume's size.

import { BLOCK_BYTES } from '../store/block-size';

/** Blocks per chunk: a chunk is 4 KiB of bits covering 128 MiB of volume. */
const CHUNK_BLOCKS = 32 * 1024;

/** A chunk as encode() writes it: its index, then its bits. */
const ENCODED_CHUNK_BYTES = 4 + CHUNK_BLOCKS / 8;

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

  /** The most encode() gives for it: chunks made are kept after they are cleared, and encode() skips those. */
  get encodedBytesAtMost(): number {
    return this.chunks.size * ENCODED_CHUNK_BYTES;
  }

  /** Marks every block the byte range touches. */
  mark(offsetBytes: number, lengthBytes: number): void {
    this.change(offsetBytes, lengthBytes, true);
  }

  /** Clears every block the byte range touches. */
  clear(offsetBytes: number, lengthBytes: number): void {
    this.change(offsetBytes, lengthBytes, false);
  }

  /** Clears every block from offsetBytes on (past a volume's end: activity extents are 4 MiB, volumes end on any block). */
  clearFrom(offsetBytes: number): void {
    const first = Math.ceil(offsetBytes / BLOCK_BYTES);
    for (const index of [...this.chunks.keys()]) {
      const from = Math.max(first, index * CHUNK_BLOCKS);
      const end = (index + 1) * CHUNK_BLOCKS;
      if (from < end) this.change(from * BLOCK_BYTES, (end - from) * BLOCK_BYTES, false);
    }
  }

  /** Marks every block that is dirty in other. */
  merge(other: DirtyMap): void {
    for (const run of other.runs()) this.mark(run.offsetBytes, run.lengthBytes);
  }

  /** A copy that changes apart from this one. */
  clone(): DirtyMap {
    const copy = new DirtyMap();
    copy.merge(this);
    return copy;
  }

  /** The map as bytes (for a file or the wire): per chunk with a dirty block, its u32 index and its bits. */
  encode(): Buffer {
    const chunks = [...this.chunks].filter(([, bits]) => bits.some((b) => b !== 0));
    const out = Buffer.alloc(chunks.length * ENCODED_CHUNK_BYTES);
    chunks.forEach(([index, bits], i) => {
      out.writeUInt32LE(index, i * ENCODED_CHUNK_BYTES);
      out.set(bits, i * ENCODED_CHUNK_BYTES + 4);
    });
    return out;
  }

  /** The map that encode() gave bytes for; throws on bytes it cannot have given. */
  static decode(bytes: Uint8Array): DirtyMap {
    if (bytes.length % ENCODED_CHUNK_BYTES !== 0) throw new Error(`a dirty map is a whole number of ${ENCODED_CHUNK_BYTES}-byte chunks; got ${bytes.length} bytes`);
    const map = new DirtyMap();
    const view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
    for (let at = 0; at < view.length; at += ENCODED_CHUNK_BYTES) {
      const index = view.readUInt32LE(at);
      if (map.chunks.has(index)) throw new Error(`a dirty map names chunk ${index} twice`);
      const bits = new Uint8Array(view.subarray(at + 4, at + ENCODED_CHUNK_BYTES));
      map.chunks.set(index, bits);
      for (const byte of bits) map.count += popcount(byte);
    }
    return map;
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

function popcount(byte: number): number {
  let n = 0;
  for (let b = byte; b !== 0; b &= b - 1) n++;
  return n;
}
