// Reads of pool member files that fail with EIO, as a disk with bad sectors fails them: every read
// while `failing` is set, or only reads that touch one of the byte ranges in `badRanges` (of the
// member file, so a block's position there is DATA_OFFSET_BYTES + block * 4096).

import fs from 'node:fs';
import { FileOpsLayer } from './file-ops-layer';
import { isPoolFile } from './faulty-fs';

export class FailingPoolReads extends FileOpsLayer {
  /** Every read of a pool file fails. */
  failing = false;
  /** Reads of a pool file that touch one of these [start, end) byte ranges fail. */
  badRanges: [number, number][] = [];
  /** Reads failed so far. */
  failed = 0;

  override readSync(fd: number, buf: Buffer, offset: number, length: number, position: number): number {
    if (this.hits(fd, position, length)) throw this.readError();
    return this.below.readSync(fd, buf, offset, length, position);
  }

  override read(fd: number, buf: Buffer, offset: number, length: number, position: number, done: (err: NodeJS.ErrnoException | null, read: number) => void): void {
    if (this.hits(fd, position, length)) {
      const error = this.readError();
      setImmediate(() => done(error, 0));
    } else this.below.read(fd, buf, offset, length, position, done);
  }

  private hits(fd: number, position: number, length: number): boolean {
    if (!this.failing && !this.badRanges.some(([start, end]) => position < end && position + length > start)) return false;
    return isPoolFile(fs.readlinkSync(`/proc/self/fd/${fd}`));
  }

  private readError(): NodeJS.ErrnoException {
    this.failed++;
    return Object.assign(new Error('EIO: i/o error, read'), { code: 'EIO', errno: -5 });
  }
}
