// A volume seen through a window of fixed size (the largest a volume can be): what lies past the
// volume's end reads as zeroes, and writing there fails with ENOSPC, as it would at the end.
//
// Why: an NBD client learns the export's size once, when it connects, and nbdfuse (with the loop
// device on top of its file) cannot be told of a new one. Attached through this window, the device
// never has to reconnect when the volume grows: the loop device's own size limit, raised after the
// volume grows, decides how much of the window the filesystem sees. The window's size never
// changes, so a reconnect after a weftd restart finds the export as it was.

import type { Pieces } from '../pieces';
import type { BlockDevice, Extent, WriteZeroesOptions } from './block-device';
import { MAX_VOLUME_BYTES } from './types';

export const GROWABLE_WINDOW_BYTES = MAX_VOLUME_BYTES;

export class GrowableDevice implements BlockDevice {
  readonly sizeBytes = GROWABLE_WINDOW_BYTES;

  constructor(private readonly volume: BlockDevice) {}

  get readOnly(): boolean {
    return this.volume.readOnly;
  }

  async read(offsetBytes: number, lengthBytes: number): Promise<Buffer> {
    const inside = this.insideLength(offsetBytes, lengthBytes);
    if (inside === lengthBytes) return this.volume.read(offsetBytes, lengthBytes);
    const out = Buffer.alloc(lengthBytes);
    if (inside > 0) (await this.volume.read(offsetBytes, inside)).copy(out);
    return out;
  }

  // Writes, trims and zeroes past the end go to the volume, which refuses them (ENOSPC).
  write(offsetBytes: number, data: Buffer | Pieces, fua: boolean): Promise<void> {
    return this.volume.write(offsetBytes, data, fua);
  }

  flush(): Promise<void> {
    return this.volume.flush();
  }

  trim(offsetBytes: number, lengthBytes: number, fua: boolean): Promise<void> {
    return this.volume.trim(offsetBytes, lengthBytes, fua);
  }

  writeZeroes(offsetBytes: number, lengthBytes: number, options: WriteZeroesOptions): Promise<void> {
    return this.volume.writeZeroes(offsetBytes, lengthBytes, options);
  }

  async blockStatus(offsetBytes: number, lengthBytes: number): Promise<Extent[]> {
    const inside = this.insideLength(offsetBytes, lengthBytes);
    if (inside > 0) return this.volume.blockStatus(offsetBytes, inside);
    return [{ lengthBytes, hole: true, zero: true }];
  }

  /** How many bytes of [offset, offset + length) lie inside the volume as it is now. */
  private insideLength(offsetBytes: number, lengthBytes: number): number {
    return Math.max(0, Math.min(offsetBytes + lengthBytes, this.volume.sizeBytes) - offsetBytes);
  }
}
