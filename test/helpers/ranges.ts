// Random byte ranges for the randomized engine tests: the sizes and alignments that reach the
// engine's different paths (partial blocks, single blocks, thread-pool writes over 128 KiB).

import type { Prng } from './prng';

const KiB = 1024;
const B = 4096;

/** A range for a write: 1 byte to 300 KiB, half of them block-aligned, some over 128 KiB. */
export function randomWriteRange(rng: Prng, sizeBytes: number): [number, number] {
  const lengths = [
    () => rng.int(1, 100),
    () => rng.int(1, 16 * KiB),
    () => rng.int(16 * KiB, 128 * KiB),
    () => rng.int(128 * KiB + 1, 300 * KiB),
  ];
  return placeRange(rng, sizeBytes, rng.pick(lengths)());
}

/** Places about wanted bytes at a random offset of a device of sizeBytes; half of them block-aligned. */
export function placeRange(rng: Prng, sizeBytes: number, wanted: number): [number, number] {
  const aligned = rng.chance(0.5);
  let length = Math.min(sizeBytes, aligned ? Math.max(B, Math.round(wanted / B) * B) : wanted);
  let offset = rng.int(0, sizeBytes - length);
  if (aligned) offset -= offset % B;
  if (length === 0) length = 1;
  return [offset, length];
}

/** Whether [offset, offset + length) meets any of the ranges. */
export function overlaps(ranges: [number, number][], offset: number, length: number): boolean {
  return ranges.some(([o, l]) => o < offset + length && offset < o + l);
}
