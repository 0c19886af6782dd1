// Turns a device's extents into base:allocation descriptors for one BLOCK_STATUS reply: clipped
// to the request, merged where the state repeats, at most one when the client sets REQ_ONE.

import { STATUS_MAX_EXTENTS, type Extent } from '../volume/block-device';
import * as P from './protocol';

/** Keeps replies small; the client asks again from where the reply stopped. */
const MAX_DESCRIPTORS = STATUS_MAX_EXTENTS;

/**
 * What a BLOCK_STATUS may hold until its reply has left, counted in the in-flight budget: the
 * device's extents (JS objects, about 64 bytes each), then the reply (8 bytes per descriptor).
 */
export const BLOCK_STATUS_HELD_BYTES = MAX_DESCRIPTORS * 64;

/** Returns (length, flags) pairs covering at least one byte and at most `requestedBytes`. */
export function allocationDescriptors(extents: Extent[], requestedBytes: number, reqOne: boolean): number[] {
  const out: number[] = [];
  let covered = 0;
  for (const extent of extents) {
    if (!(Number.isSafeInteger(extent.lengthBytes) && extent.lengthBytes > 0)) break;
    const lengthBytes = Math.min(extent.lengthBytes, requestedBytes - covered);
    const flags = (extent.hole ? P.STATE_HOLE : 0) | (extent.zero ? P.STATE_ZERO : 0);
    const last = out.length - 2;
    if (last >= 0 && out[last + 1] === flags) out[last] += lengthBytes;
    else if (reqOne && out.length > 0) break;
    else if (out.length / 2 >= MAX_DESCRIPTORS) break;
    else out.push(lengthBytes, flags);
    covered += lengthBytes;
    if (covered >= requestedBytes) break;
  }
  // "Unknown" (status 0) is always a truthful answer when the device reported nothing usable.
  return out.length > 0 ? out : [requestedBytes, 0];
}
