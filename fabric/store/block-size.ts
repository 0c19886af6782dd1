// The unit of the data path: pools allocate, the engine maps and checksums, in blocks of this size.

/** Data is checksummed, allocated and addressed in blocks of this size. */
export const BLOCK_BYTES = 4096;
