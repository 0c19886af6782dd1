// The native CRC-32C against a plain bit-by-bit one written here from the definition (Castagnoli,
// reflected, initial value and final xor all ones): the checksums already on users' disks must not
// change, whichever path (one chain, three blocks at once, one block in three parts) computes them.

import { randomBytes } from 'crypto';
import { crc32c, crc32cBlocks, crc32cPieces } from '../../fabric/store/checksum';

function reference(data: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of data) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

describe('CRC-32C', () => {
  test('the check value of the standard (RFC 3720): "123456789" gives 0xe3069283', () => {
    expect(crc32c(Buffer.from('123456789'))).toBe(0xe3069283);
    expect(reference(Buffer.from('123456789'))).toBe(0xe3069283);
  });

  test.each([0, 1, 7, 8, 9, 1365, 4095, 4096, 4097, 8192, 12_288])('a buffer of %i random bytes', (length) => {
    for (let round = 0; round < 20; round++) {
      const data = randomBytes(length);
      expect(crc32c(data)).toBe(reference(data));
    }
  });

  test('4 KiB blocks of zeroes, of ones, and with one bit set in each of the three parts', () => {
    const blocks = [Buffer.alloc(4096), Buffer.alloc(4096, 0xff)];
    for (const bit of [0, 1360 * 8 - 1, 1360 * 8, 2720 * 8 + 5, 4096 * 8 - 1]) {
      const block = Buffer.alloc(4096);
      block[bit >> 3] |= 1 << (bit & 7);
      blocks.push(block);
    }
    for (const block of blocks) expect(crc32c(block)).toBe(reference(block));
  });

  test('blocks one by one, three at once, and across pieces give the same as the reference', () => {
    const data = randomBytes(7 * 4096);
    const expected = Array.from({ length: 7 }, (_, i) => reference(data.subarray(i * 4096, (i + 1) * 4096)));
    const blocks = new Uint32Array(7);
    crc32cBlocks(data, 4096, blocks);
    expect([...blocks]).toEqual(expected);
    const pieces = new Uint32Array(7);
    crc32cPieces([data.subarray(0, 5000), data.subarray(5000, 4 * 4096), data.subarray(4 * 4096)], 4096, pieces);
    expect([...pieces]).toEqual(expected);
    const oddBlocks = new Uint32Array(3);
    crc32cBlocks(data.subarray(0, 3 * 512), 512, oddBlocks);
    expect([...oddBlocks]).toEqual([0, 1, 2].map((i) => reference(data.subarray(i * 512, (i + 1) * 512))));
  });
});
