// The one interface of the I/O path. Every layer (QoS, metrics, replication, encryption,
// the local replica) is a BlockDevice that wraps the one below it (most extend PassThroughDevice,
// in pass-through-device.ts); the NBD server sees only this, and asks it what to advertise.

import type { Pieces } from '../pieces';

/**
 * The most extents a device answers one blockStatus with (it may answer for part of the range): one
 * NBD reply carries no more descriptors, and each is a JS object held until the reply is written.
 */
export const STATUS_MAX_EXTENTS = 16384;

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
  /**
   * NBD_CMD_FLAG_FAST_ZERO: if zeroing this range would be no faster than writing zeroes, fail at
   * once with IoError ENOTSUP and change nothing. Set only on a device whose canFastZero() is true.
   */
  fastZero?: boolean;
}

/**
 * Who a request is for: one consumer's handle (device-handle.ts). Once its client has gone (its
 * connection closed with requests still in flight), a layer that would re-issue a request that
 * failed (the forwarder to the primary) gives up instead: the client may have reconnected and
 * written the range again since, and a late copy of the old write must not land over the new one.
 */
export interface RequestOwner {
  readonly abandoned: boolean;
}

export interface BlockDevice {
  /** Current size; it may grow while the device is open (online resize). */
  readonly sizeBytes: number;
  readonly readOnly: boolean;
  /**
   * Resolves with exactly lengthBytes bytes, which then belong to the caller (who may hand them to
   * returnBuffer() in fabric/buffers.ts when done). Rejects with IoError (EIO on a checksum mismatch).
   */
  read(offsetBytes: number, lengthBytes: number, owner?: RequestOwner): Promise<Buffer>;
  /**
   * Writes data: one buffer, or pieces whose concatenation is the data (the NBD server passes a
   * WRITE's payload in the chunks it arrived in). With fua, resolves only once the data is durable.
   * The device must not use data after the promise settles (the caller may reuse the buffers); a
   * layer that needs it later copies it.
   */
  write(offsetBytes: number, data: Buffer | Pieces, fua: boolean, owner?: RequestOwner): Promise<void>;
  /** Resolves once every write that completed before the call is durable. */
  flush(owner?: RequestOwner): Promise<void>;
  /** Frees the range; it reads back as zeroes. */
  trim(offsetBytes: number, lengthBytes: number, fua: boolean, owner?: RequestOwner): Promise<void>;
  writeZeroes(offsetBytes: number, lengthBytes: number, options: WriteZeroesOptions, owner?: RequestOwner): Promise<void>;
  /** Extents covering at least the first byte of the range, at most the whole range, in order. */
  blockStatus(offsetBytes: number, lengthBytes: number, owner?: RequestOwner): Promise<Extent[]>;

  // Capabilities: asked when a client connects (the NBD server advertises them as transmission
  // flags, and accepts only what it advertised). A layer answers for itself and the layers below
  // it; false is always safe. The write-type ones are false on a read-only device.

  /**
   * NBD_FLAG_CAN_MULTI_CONN: flush(), and write/trim/writeZeroes with fua, make durable every write
   * completed through any handle on the same data, not only through this one, so a client may
   * spread its requests over several connections.
   */
  canMultiConn(): boolean;
  /** NBD_FLAG_SEND_FUA: write, trim and writeZeroes honour fua (durable before they resolve). */
  canFua(): boolean;
  /** NBD_FLAG_SEND_TRIM: trim() frees the range (it then reads as zeroes). */
  canTrim(): boolean;
  /** NBD_FLAG_SEND_WRITE_ZEROES: writeZeroes() works, with and without noHole. */
  canZero(): boolean;
  /**
   * NBD_FLAG_SEND_FAST_ZERO: writeZeroes() honours fastZero, failing with ENOTSUP when zeroing
   * would be no faster than writing. Meaningful only with canZero().
   */
  canFastZero(): boolean;
}

/**
 * A layer of a volume's stack (built once per volume by the daemon's stackFor): the block calls,
 * plus the control operations that change the volume. They enter at the top of the stack, like
 * I/O, so that a layer that must order them among the writes (replication) sees them in place.
 */
export interface VolumeLayer extends BlockDevice {
  /** Takes a snapshot of the volume as it is after every write completed before the call. */
  snapshot(name: string): Promise<void>;
  /** Grows the volume. */
  resize(sizeBytes: number): Promise<void>;
  /** Returns the volume to one of its snapshots. */
  revert(snapshot: string): Promise<void>;
}
