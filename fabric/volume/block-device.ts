// The one interface of the I/O path. Every layer (QoS, metrics, replication, encryption,
// the local replica) is a BlockDevice that wraps the one below it; the NBD server sees only this.

import type { Pieces } from '../pieces';

/** A run of bytes with one allocation state, as NBD's base:allocation context reports it. */
export interface Extent {
  lengthBytes: number;
  /** No storage is allocated for this run (NBD_STATE_HOLE). */
  hole: boolean;
  /** This run reads as zeroes (NBD_STATE_ZERO). */
  zero: boolean;
}

export interface WriteZeroesOptions {
  fua: boolean;
  /** The caller wants the zeroes allocated, not punched (NBD_CMD_FLAG_NO_HOLE). */
  noHole: boolean;
}

export interface BlockDevice {
  /** Current size; it may grow while the device is open (online resize). */
  readonly sizeBytes: number;
  readonly readOnly: boolean;
  /**
   * Resolves with exactly lengthBytes bytes, which then belong to the caller (who may hand them to
   * returnBuffer() in fabric/buffers.ts when done). Rejects with IoError (EIO on a checksum mismatch).
   */
  read(offsetBytes: number, lengthBytes: number): Promise<Buffer>;
  /**
   * Writes data: one buffer, or pieces whose concatenation is the data (the NBD server passes a
   * WRITE's payload in the chunks it arrived in). With fua, resolves only once the data is durable.
   * The device must not use data after the promise settles (the caller may reuse the buffers); a
   * layer that needs it later copies it.
   */
  write(offsetBytes: number, data: Buffer | Pieces, fua: boolean): Promise<void>;
  /** Resolves once every write that completed before the call is durable. */
  flush(): Promise<void>;
  /** Frees the range; it reads back as zeroes. */
  trim(offsetBytes: number, lengthBytes: number, fua: boolean): Promise<void>;
  writeZeroes(offsetBytes: number, lengthBytes: number, options: WriteZeroesOptions): Promise<void>;
  /** Extents covering at least the first byte of the range, at most the whole range, in order. */
  blockStatus(offsetBytes: number, lengthBytes: number): Promise<Extent[]>;
}
