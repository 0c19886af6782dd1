// A real BlockDevice for tests: a sparse file in a temp directory, read and written with
// positional fs calls and made durable with fdatasync. Trim writes zeroes (no fallocate).

import fs from 'node:fs/promises';
import type { Pieces } from '../../fabric/pieces';
import type { BlockDevice, Extent, WriteZeroesOptions } from '../../fabric/volume/block-device';

const ZERO_CHUNK_BYTES = 1024 * 1024;

export class FileBlockDevice implements BlockDevice {
  private zeroes?: Buffer;

  private constructor(
    private readonly handle: fs.FileHandle,
    readonly path: string,
    readonly sizeBytes: number,
    readonly readOnly: boolean,
  ) {}

  /** Creates (or truncates) a sparse file of `sizeBytes` at `path` and opens it. */
  static async create(path: string, sizeBytes: number, options: { readOnly?: boolean } = {}): Promise<FileBlockDevice> {
    const handle = await fs.open(path, 'w+');
    await handle.truncate(sizeBytes);
    return new FileBlockDevice(handle, path, sizeBytes, options.readOnly ?? false);
  }

  async read(offsetBytes: number, lengthBytes: number): Promise<Buffer> {
    const out = Buffer.allocUnsafe(lengthBytes);
    let done = 0;
    while (done < lengthBytes) {
      const { bytesRead } = await this.handle.read(out, done, lengthBytes - done, offsetBytes + done);
      if (bytesRead === 0) throw new Error(`short read at ${offsetBytes + done} in ${this.path}`);
      done += bytesRead;
    }
    return out;
  }

  async write(offsetBytes: number, pieces: Buffer | Pieces, fua: boolean): Promise<void> {
    const data = Buffer.isBuffer(pieces) ? pieces : Buffer.concat(pieces);
    let done = 0;
    while (done < data.length) {
      const { bytesWritten } = await this.handle.write(data, done, data.length - done, offsetBytes + done);
      done += bytesWritten;
    }
    if (fua) await this.flush();
  }

  flush(): Promise<void> {
    return this.handle.datasync();
  }

  trim(offsetBytes: number, lengthBytes: number, fua: boolean): Promise<void> {
    return this.writeZeroes(offsetBytes, lengthBytes, { fua, noHole: true });
  }

  async writeZeroes(offsetBytes: number, lengthBytes: number, options: WriteZeroesOptions): Promise<void> {
    this.zeroes ??= Buffer.alloc(ZERO_CHUNK_BYTES);
    for (let at = 0; at < lengthBytes; at += ZERO_CHUNK_BYTES) {
      const n = Math.min(ZERO_CHUNK_BYTES, lengthBytes - at);
      await this.write(offsetBytes + at, this.zeroes.subarray(0, n), false);
    }
    if (options.fua) await this.flush();
  }

  /** Reports everything as allocated data: always a truthful answer for base:allocation. */
  async blockStatus(_offsetBytes: number, lengthBytes: number): Promise<Extent[]> {
    return [{ lengthBytes, hole: false, zero: false }];
  }

  /** Safe in fact (one file handle for every connection), but claimed only where a test asks (AnsweringDevice). */
  canMultiConn(): boolean {
    return false;
  }

  canFua(): boolean {
    return !this.readOnly;
  }

  canTrim(): boolean {
    return !this.readOnly;
  }

  canZero(): boolean {
    return !this.readOnly;
  }

  /** Zeroes are written like any data: never faster. */
  canFastZero(): boolean {
    return false;
  }

  close(): Promise<void> {
    return this.handle.close();
  }
}
