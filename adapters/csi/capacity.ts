// Sizes from a CSI capacity_range: what size a new or grown volume gets (whole 4 KiB blocks, within
// the range) and whether an existing volume's size satisfies a range.

import { BLOCK_BYTES } from '../../fabric/volume/types';
import { invalidArgument, outOfRange } from './errors';
import type { CapacityRange } from './messages';

/** The size of a new, empty volume when the CO asks for none. */
export const DEFAULT_VOLUME_BYTES = 1024 ** 3;
/** The largest volume the engine makes (0xfffffff0 blocks, just under 16 TiB). */
export const MAX_VOLUME_BYTES = 0xfffffff0 * BLOCK_BYTES;

/** A well-formed range: no negative bounds, required not above limit. Absent means "any size". */
export function checkRange(field: string, range: CapacityRange | null): CapacityRange {
  const { required_bytes: required = 0, limit_bytes: limit = 0 } = range ?? {};
  if (required < 0 || limit < 0) throw invalidArgument(`${field} must not be negative`);
  if (limit && required > limit) throw invalidArgument(`${field}.required_bytes ${required} is more than limit_bytes ${limit}`);
  return { required_bytes: required, limit_bytes: limit };
}

/**
 * The size to give a volume: at least required_bytes and minimumBytes (a clone's source), rounded
 * up to whole blocks; with neither, the default (or the limit, if lower). OUT_OF_RANGE when that
 * exceeds limit_bytes or what a volume can be.
 */
export function sizeInRange(range: CapacityRange, minimumBytes = 0): number {
  const { required_bytes: required, limit_bytes: limit } = range;
  const ceiling = limit ? Math.floor(limit / BLOCK_BYTES) * BLOCK_BYTES : MAX_VOLUME_BYTES;
  const wanted = Math.max(required, minimumBytes);
  const size = wanted ? roundUp(wanted) : Math.min(DEFAULT_VOLUME_BYTES, ceiling);
  if (size === 0 || size > ceiling) {
    const why = limit ? `limit_bytes ${limit}` : `the largest volume (${MAX_VOLUME_BYTES} bytes)`;
    throw outOfRange(`a volume of ${size} bytes (whole 4 KiB blocks, at least ${wanted} bytes) exceeds ${why}`);
  }
  return size;
}

/** Whether a volume of sizeBytes satisfies the range. */
export function fitsRange(sizeBytes: number, range: CapacityRange): boolean {
  return sizeBytes >= range.required_bytes && (!range.limit_bytes || sizeBytes <= range.limit_bytes);
}

function roundUp(bytes: number): number {
  return Math.ceil(bytes / BLOCK_BYTES) * BLOCK_BYTES;
}
