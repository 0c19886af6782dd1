// A fault-injecting file layer for tests: writes and syncs of chosen files (the metadata files,
// optionally the pool files) fail with EIO at random or on demand, or with ENOSPC while the "disk is
// full", which can be switched off again, like a full disk that gets space back. A failed call does
// nothing (the file is left as it was), except a torn write (tearNext), which lands its first block.

import * as fs from 'fs';
import { slicePieces, totalBytes, type Pieces } from '../../fabric/pieces';
import { FileOpsLayer } from './file-ops-layer';
import type { Prng } from './prng';

export type FaultCode = 'EIO' | 'ENOSPC';
const ERRNO: Record<FaultCode, number> = { EIO: -5, ENOSPC: -28 };

/** The files of a data dir that hold metadata (journal, checkpoint). */
export const isMetadataFile = (file: string): boolean => file.includes('/meta/');
/** A pool member's backing file. */
export const isPoolFile = (file: string): boolean => /\/weft-pool-[^/]*\.img$/.test(file);

/** What lands of a torn write: its first block. */
const TORN_BYTES = 4096;

type FaultySyscall = 'write' | 'writev' | 'fdatasync' | 'fsync' | 'ftruncate';

export class FaultyFileOps extends FileOpsLayer {
  /** While true, every write and sync of an affected file fails with ENOSPC. */
  diskFull = false;
  /** The chance that a write or sync of an affected file fails with EIO. */
  failureRate = 0;
  /** Which files faults hit (by path). */
  affects: (file: string) => boolean = isMetadataFile;
  /** Which calls faults hit: writes (and truncates), syncs, or both. */
  calls: ReadonlySet<'write' | 'sync'> = new Set(['write', 'sync']);
  /**
   * Affected files have room up to this offset only: a write across it is cut short there, as on a
   * disk that fills up in the middle of a write, and one at or past it fails with ENOSPC (writeSync).
   */
  roomEndsAt = Infinity;
  /**
   * The next this many writes of an affected file longer than one 4 KiB block land their first block
   * only, then fail with EIO: a disk that fails part way through a write.
   */
  tearNext = 0;
  /** Failures injected so far. */
  injected = 0;
  private readonly planned: FaultCode[] = [];

  constructor(private readonly rng: Prng) {
    super();
  }

  /** Makes the next write or sync of an affected file fail with code (queued in order). */
  failNext(code: FaultCode, count = 1): void {
    for (let i = 0; i < count; i++) this.planned.push(code);
  }

  /** Whether any fault may still be injected. */
  get active(): boolean {
    return this.diskFull || this.failureRate > 0 || this.planned.length > 0 || this.tearNext > 0;
  }

  /** Ends every fault: the disk is healthy again. */
  heal(): void {
    this.diskFull = false;
    this.failureRate = 0;
    this.planned.length = 0;
    this.tearNext = 0;
  }

  override writeSync(fd: number, buf: Buffer, offset: number, length: number, position: number): number {
    this.throwIfFaulty(fd, 'write');
    if (position + length <= this.roomEndsAt || !this.affects(fs.readlinkSync(`/proc/self/fd/${fd}`))) return this.below.writeSync(fd, buf, offset, length, position);
    if (position >= this.roomEndsAt) throw this.injectedError('ENOSPC', 'write', fs.readlinkSync(`/proc/self/fd/${fd}`));
    return this.below.writeSync(fd, buf, offset, this.roomEndsAt - position, position);
  }

  override writevSync(fd: number, pieces: Pieces, position: number): number {
    if (this.tears(fd, pieces)) {
      this.below.writevSync(fd, slicePieces(pieces, 0, TORN_BYTES), position);
      throw this.injectedError('EIO', 'writev', fs.readlinkSync(`/proc/self/fd/${fd}`));
    }
    this.throwIfFaulty(fd, 'writev');
    return this.below.writevSync(fd, pieces, position);
  }

  override writev(fd: number, pieces: Pieces, position: number, done: (err: NodeJS.ErrnoException | null, written: number) => void): void {
    if (this.tears(fd, pieces)) {
      this.below.writevSync(fd, slicePieces(pieces, 0, TORN_BYTES), position);
      const torn = this.injectedError('EIO', 'writev', fs.readlinkSync(`/proc/self/fd/${fd}`));
      setImmediate(() => done(torn, 0));
      return;
    }
    const fault = this.fault(fd, 'writev');
    if (fault) setImmediate(() => done(fault, 0));
    else this.below.writev(fd, pieces, position, done);
  }

  override fdatasync(fd: number, done: (err: NodeJS.ErrnoException | null) => void): void {
    const fault = this.fault(fd, 'fdatasync');
    if (fault) setImmediate(() => done(fault));
    else this.below.fdatasync(fd, done);
  }

  override fsyncSync(fd: number): void {
    this.throwIfFaulty(fd, 'fsync');
    this.below.fsyncSync(fd);
  }

  override ftruncateSync(fd: number, length: number): void {
    this.throwIfFaulty(fd, 'ftruncate');
    this.below.ftruncateSync(fd, length);
  }

  /** Whether this write is to be torn (tearNext); counts it. */
  private tears(fd: number, pieces: Pieces): boolean {
    if (this.tearNext === 0 || totalBytes(pieces) <= TORN_BYTES || !this.affects(fs.readlinkSync(`/proc/self/fd/${fd}`))) return false;
    this.tearNext--;
    return true;
  }

  private throwIfFaulty(fd: number, syscall: FaultySyscall): void {
    const fault = this.fault(fd, syscall);
    if (fault) throw fault;
  }

  /** The error this call fails with, if it is to fail. */
  private fault(fd: number, syscall: FaultySyscall): NodeJS.ErrnoException | undefined {
    if (!this.active || !this.calls.has(syscall === 'fdatasync' || syscall === 'fsync' ? 'sync' : 'write')) return undefined;
    const file = fs.readlinkSync(`/proc/self/fd/${fd}`);
    if (!this.affects(file)) return undefined;
    const code = this.planned.shift() ?? (this.diskFull ? 'ENOSPC' : this.rng.chance(this.failureRate) ? 'EIO' : undefined);
    if (!code) return undefined;
    return this.injectedError(code, syscall, file);
  }

  private injectedError(code: FaultCode, syscall: FaultySyscall, file: string): NodeJS.ErrnoException {
    this.injected++;
    const message = code === 'EIO' ? 'i/o error' : 'no space left on device';
    return Object.assign(new Error(`${code}: ${message} (injected), ${syscall} '${file}'`), { code, errno: ERRNO[code], syscall, path: file });
  }
}
