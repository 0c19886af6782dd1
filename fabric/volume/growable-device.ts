// A volume seen through a window of fixed size (the largest a volume can be): what lies past the
// volume's end reads as zeroes, and writing there fails with ENOSPC, as it would at the end.
//
// Why: an NBD client learns the export's size once, when it connects, and nbdfuse (with the loop
// device on top of its file) cannot be told of a new one. Attached through this window, the device
// never has to reconnect when the volume grows: the loop device's own size limit, raised after the
// volume grows, decides how much of the window the filesystem sees. The window's size never
// changes, so a reconnect after a weftd restart finds the export as it was.

import type { Extent } from './block-device';
import { PassThroughDevice } from './pass-through-device';
import { MAX_VOLUME_BYTES } from './types';

export const GROWABLE_WINDOW_BYTES = MAX_VOLUME_BYTES;

/** Changes the size, and reads and block status past the volume's end; the rest passes through. */
export class GrowableDevice extends PassThroughDevice {
  override get sizeBytes(): number {
    return GROWABLE_WINDOW_BYTES;
  }

  override async read(offsetBytes: number, lengthBytes: number): Promise<Buffer> {
    const inside = this.insideLength(offsetBytes, lengthBytes);
    if (inside === lengthBytes) return this.below.read(offsetBytes, lengthBytes);
    const out = Buffer.alloc(lengthBytes);
    if (inside > 0) (await this.below.read(offsetBytes, inside)).copy(out);
    return out;
  }

  // Writes, trims and zeroes past the end pass through to the volume, which refuses them (ENOSPC).

  override async blockStatus(offsetBytes: number, lengthBytes: number): Promise<Extent[]> {
    const inside = this.insideLength(offsetBytes, lengthBytes);
    if (inside > 0) return this.below.blockStatus(offsetBytes, inside);
    return [{ lengthBytes, hole: true, zero: true }];
  }

  /** How many bytes of [offset, offset + length) lie inside the volume as it is now. */
  private insideLength(offsetBytes: number, lengthBytes: number): number {
    return Math.max(0, Math.min(offsetBytes + lengthBytes, this.below.sizeBytes) - offsetBytes);
  }
}
