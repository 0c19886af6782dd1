// The unit of the data path: pools allocate, the engine maps and checksums, in blocks of this size.

/** Data is checksummed, allocated and addressed in blocks of this size. */
export const BLOCK_BYTES = 4096;

/** A size rounded up to whole blocks, as every copy of a volume is made and grown. */
export function wholeBlocks(sizeBytes: number): number {
  return Math.ceil(sizeBytes / BLOCK_BYTES) * BLOCK_BYTES;
}
