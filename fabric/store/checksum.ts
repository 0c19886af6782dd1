// Block checksums: CRC-32C computed by the native module (fabric/store/native/crc32c.c), which
// uses the CPU's CRC instruction. One call checksums every block of a buffer.

import { loadNativeModule } from '../native';

interface NativeChecksums {
  crc32c(data: Uint8Array): number;
  crc32cBlocks(data: Uint8Array, blockBytes: number, out: Uint32Array): void;
  crc32cPieces(pieces: readonly Uint8Array[], blockBytes: number, out: Uint32Array): void;
}

const native = loadNativeModule<NativeChecksums>('weft_native');

/** CRC-32C of a whole buffer. */
export const crc32c: (data: Uint8Array) => number = native.crc32c;

/** Writes into out[i] the CRC-32C of the i-th blockBytes-long block of data. */
export const crc32cBlocks: (data: Uint8Array, blockBytes: number, out: Uint32Array) => void = native.crc32cBlocks;

/**
 * Like crc32cBlocks over the concatenation of pieces, without concatenating: a block may start in
 * one piece and end in a later one. The pieces' total length must be a multiple of blockBytes.
 */
export const crc32cPieces: (pieces: readonly Uint8Array[], blockBytes: number, out: Uint32Array) => void = native.crc32cPieces;
